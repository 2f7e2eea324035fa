//! Reading saga definition files: for `serve` (with the shipped ones) and
//! for `sagaplane definitions check`.

use std::path::{Path, PathBuf};

use sagaplane_sagas::definition::{Definition, DefinitionError, Problem};

/// Every definition file under `paths`: a file as it is, a folder's `*.toml`
/// files in name order.
pub fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, DefinitionError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|e| unreadable(path, &e))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Reads and checks every file; `Err` holds every refused file's problems.
pub fn read(files: &[PathBuf]) -> Result<Vec<(String, Definition)>, Vec<DefinitionError>> {
    let mut read = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let name = file.display().to_string();
        let checked = std::fs::read_to_string(file)
            .map_err(|e| unreadable(file, &e))
            .and_then(|text| Definition::from_toml(&name, &text));
        match checked {
            Ok(d) => read.push((name, d)),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(read)
    } else {
        Err(errors)
    }
}

/// The shipped definitions, then those of `paths`.
pub fn offered(paths: &[PathBuf]) -> anyhow::Result<Vec<(String, Definition)>> {
    let mut all: Vec<(String, Definition)> = sagaplane_sagas::definition::SHIPPED
        .iter()
        // Named as shipped, so a team's copy of `order.v1.toml` is told apart.
        .map(|(file, _)| format!("{file} (shipped)"))
        .zip(Definition::shipped())
        .collect();
    let files = files(paths).map_err(|e| anyhow::anyhow!("{e}"))?;
    let read = read(&files).map_err(|errors| {
        let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("Invalid saga definitions:\n{}", all.join("\n"))
    })?;
    all.extend(read);
    Ok(all)
}

/// `sagaplane definitions check`: every file read and checked, each found
/// good listed, every problem printed; `Err` when any file was refused.
pub fn check(paths: &[PathBuf]) -> anyhow::Result<()> {
    let files = files(paths).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut refused = 0;
    for file in &files {
        match read(std::slice::from_ref(file)) {
            Ok(read) => {
                for (name, d) in read {
                    println!(
                        "{name}: ok: saga type `{}` version {}, {} steps, hash {}",
                        d.saga_type,
                        d.version,
                        d.steps.len(),
                        d.hash
                    );
                }
            }
            Err(errors) => {
                refused += 1;
                for e in errors {
                    eprintln!("{e}");
                }
            }
        }
    }
    if refused > 0 {
        anyhow::bail!("{refused} of {} definition files refused", files.len());
    }
    Ok(())
}

fn unreadable(path: &Path, e: &std::io::Error) -> DefinitionError {
    DefinitionError {
        file: path.display().to_string(),
        problems: vec![Problem {
            at: "file".into(),
            message: format!("cannot be read: {e}"),
        }],
    }
}
