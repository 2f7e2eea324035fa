//! The database of a first run: with no `database.url` and nothing answering
//! at the default address, `serve` runs a PostgreSQL server of its own from
//! the installed server programs (`initdb`, `postgres`), its data kept in a
//! folder of the user's that survives restarts.
//!
//! The server listens on a Unix socket inside its data folder only (no TCP
//! port), so only its owner reaches it. It is a child of sagaplane in a
//! process group of its own (a Ctrl-C reaches sagaplane, which stops it once
//! it has stopped using it), asked by the kernel to shut down if sagaplane
//! dies first (Linux); a server left over by a sagaplane that died anyway is
//! stopped by the next start. A lock on a file in the data folder, held
//! while the process lives, keeps a second `serve` off the same folder.
//!
//! PostgreSQL refuses to run as root: as root, the server runs as the
//! system user `postgres`, which owns its data folder.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use sqlx::postgres::PgConnectOptions;
use sqlx::Connection;

use crate::configuration::{DatabaseSettings, PrivateMode, DEFAULT_URL};

/// The socket's port number (part of its file name only: no TCP port is opened).
const PORT: u16 = 5432;

/// Where the server programs are looked for, in this order, as said in errors.
pub const SEARCHED: &str = "`pg_config --bindir`, /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin, \
     /opt/homebrew/opt/postgresql@*/bin, /usr/local/opt/postgresql@*/bin, \
     /Applications/Postgres.app/Contents/Versions/latest/bin and the PATH";

/// Why a private server is wanted, as said in the log and in errors.
const NOTHING_ANSWERS: &str = "no PostgreSQL server answers at 127.0.0.1:5432";
const ALWAYS: &str = "database.private = \"always\"";

/// What a first run without any PostgreSQL programs must do, said in full;
/// `why` a private server was wanted.
pub fn not_installed(why: &str) -> String {
    format!(
        "{why} and no PostgreSQL server programs (initdb and postgres) were found \
         (searched {SEARCHED}). Install PostgreSQL's server (Debian, Ubuntu: \
         `apt install postgresql`; Fedora, RHEL: `dnf install postgresql-server`; macOS: \
         `brew install postgresql@17`) and start sagaplane again, or set \
         database.postgres_bin to the folder holding initdb and postgres, or set database.url \
         (DATABASE_URL) to a PostgreSQL server of yours"
    )
}

/// The database URL `serve` uses, and the private server behind it if one
/// was started (stopped when dropped). Blocking; runs on the main thread,
/// whose end is what the kernel takes for sagaplane's death.
pub async fn open(
    settings: &DatabaseSettings,
) -> anyhow::Result<(String, Option<PrivatePostgres>)> {
    match (&settings.url, settings.private) {
        (Some(_), PrivateMode::Always) => bail!(
            "Invalid configuration: database.private = \"always\" runs a private server, \
             so database.url (DATABASE_URL) must not be set"
        ),
        (Some(url), _) => Ok((url.clone(), None)),
        (None, PrivateMode::Never) => Ok((DEFAULT_URL.into(), None)),
        (None, PrivateMode::Auto) if default_answers().await => Ok((DEFAULT_URL.into(), None)),
        (None, mode) => {
            let why = match mode {
                PrivateMode::Always => ALWAYS,
                _ => NOTHING_ANSWERS,
            };
            let bin = match &settings.postgres_bin {
                Some(bin) if has_server(bin) => bin.clone(),
                Some(bin) => bail!(
                    "database.postgres_bin ({}) holds no initdb and postgres",
                    bin.display()
                ),
                None => find_bin().ok_or_else(|| anyhow!(not_installed(why)))?,
            };
            let dir = match &settings.private_dir {
                Some(dir) => dir.clone(),
                None => default_dir()?,
            };
            let server = PrivatePostgres::start(&dir, &bin).await?;
            tracing::info!(
                data_dir = %dir.display(),
                postgres = %bin.display(),
                "{why}: running a private PostgreSQL server on a Unix socket in its data directory, \
                 kept across restarts and stopped with sagaplane"
            );
            Ok((server.url(), Some(server)))
        }
    }
}

/// Whether anything accepts a TCP connection at the default address.
async fn default_answers() -> bool {
    let connect = tokio::net::TcpStream::connect(("127.0.0.1", PORT));
    matches!(
        tokio::time::timeout(Duration::from_secs(2), connect).await,
        Ok(Ok(_))
    )
}

/// `$XDG_DATA_HOME/sagaplane`, `~/.local/share/sagaplane` (on macOS
/// `~/Library/Application Support/sagaplane`); for root `/var/lib/sagaplane`,
/// which the `postgres` user can reach (root's home it cannot).
pub fn default_dir() -> anyhow::Result<PathBuf> {
    if is_root() {
        return Ok(PathBuf::from("/var/lib/sagaplane"));
    }
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").and_then(absolute) {
        return Ok(data.join("sagaplane"));
    }
    let home = std::env::var_os("HOME").and_then(absolute).ok_or_else(|| {
        anyhow!("HOME is not set: set database.private_dir for the private PostgreSQL server")
    })?;
    Ok(if cfg!(target_os = "macos") {
        home.join("Library/Application Support/sagaplane")
    } else {
        home.join(".local/share/sagaplane")
    })
}

fn has_server(bin: &Path) -> bool {
    bin.join("initdb").is_file() && bin.join("postgres").is_file()
}

/// The folder holding PostgreSQL's `initdb` and `postgres` (and, in every
/// install, `pg_ctl`), searched as [`SEARCHED`] says; the newest version
/// first where several are installed side by side.
pub fn find_bin() -> Option<PathBuf> {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let versioned = |parent: &str, prefix: &str, bin: &str| -> Vec<PathBuf> {
        let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(parent)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let version = name.to_str()?.strip_prefix(prefix)?.split('.').next()?;
                Some((version.parse().ok()?, e.path().join(bin)))
            })
            .collect();
        found.sort();
        found.into_iter().rev().map(|(_, path)| path).collect()
    };
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    from_pg_config
        .into_iter()
        .chain(versioned("/usr/lib/postgresql", "", "bin"))
        .chain(versioned("/usr", "pgsql-", "bin"))
        .chain(versioned("/opt/homebrew/opt", "postgresql@", "bin"))
        .chain(versioned("/usr/local/opt", "postgresql@", "bin"))
        .chain([PathBuf::from(
            "/Applications/Postgres.app/Contents/Versions/latest/bin",
        )])
        .chain(on_path)
        .find(|bin| has_server(bin))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The uid and gid of the system user `postgres`, from /etc/passwd.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() > 3 && fields[0] == "postgres" {
            Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
        } else {
            None
        }
    })
}

/// A running private server; stopped (a fast shutdown) when dropped.
pub struct PrivatePostgres {
    child: Option<Child>,
    data: PathBuf,
    log: PathBuf,
    /// Held (locked) while the process lives.
    _lock: File,
}

impl PrivatePostgres {
    /// Locks `dir`, makes the cluster on first use, starts the server and
    /// waits until it takes connections.
    pub async fn start(dir: &Path, bin: &Path) -> anyhow::Result<Self> {
        let owner = if is_root() {
            Some(postgres_user().ok_or_else(|| {
                anyhow!(
                    "sagaplane runs as root, and PostgreSQL refuses to: the private server would \
                     run as the system user `postgres`, which does not exist here. Run sagaplane \
                     as another user, or create the user `postgres`, or set database.url \
                     (DATABASE_URL) to a PostgreSQL server of yours"
                )
            })?)
        } else {
            None
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("Failed to create {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("Failed to read {}", dir.display()))?;
        if owner.is_some() {
            // The `postgres` user must pass through to its data folder.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
                .with_context(|| format!("Failed to set the permissions of {}", dir.display()))?;
        }
        let lock = lock(&dir)?;
        let data = dir.join("pgdata");
        let socket = data.join(format!(".s.PGSQL.{PORT}"));
        // sun_path holds 108 bytes on Linux, 104 on macOS, with the final NUL.
        if socket.as_os_str().len() > 103 {
            bail!(
                "The private PostgreSQL server's socket path {} is too long for a Unix socket \
                 (at most 103 bytes): set database.private_dir to a shorter path",
                socket.display()
            );
        }
        let run = |tool: &str| {
            let mut command = Command::new(bin.join(tool));
            if let Some((uid, gid)) = owner {
                command.uid(uid).gid(gid);
            }
            command.current_dir(&dir).stdin(Stdio::null());
            command
        };
        if !data.join("PG_VERSION").is_file() {
            init(&dir, &data, owner, run("initdb"))?;
        }
        stop_leftover(&data)?;
        let log = dir.join("postgres.log");
        let log_file =
            File::create(&log).with_context(|| format!("Failed to create {}", log.display()))?;
        let mut command = run("postgres");
        command
            .arg("-D")
            .arg(&data)
            .args(["-c", "listen_addresses=", "-c"])
            .arg(format!("unix_socket_directories={}", data.display()))
            .args(["-c", &format!("port={PORT}")])
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            // Not in sagaplane's process group: a Ctrl-C in the terminal is
            // for sagaplane, which stops the server after its last write.
            .process_group(0);
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("Failed to run {}", bin.join("postgres").display()))?;
        let mut server = PrivatePostgres {
            child: Some(child),
            data,
            log,
            _lock: lock,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// The URL of the `sagaplane` database on the server's socket.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@localhost:{PORT}/sagaplane?host={}",
            percent_encode(&self.data.to_string_lossy())
        )
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let options = PgConnectOptions::new()
            .socket(&self.data)
            .port(PORT)
            .username("postgres")
            .database("postgres");
        let started = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                bail!(
                    "The private PostgreSQL server exited while starting ({status}); its log, {}:\n{}",
                    self.log.display(),
                    tail(&self.log)
                );
            }
            match sqlx::PgConnection::connect_with(&options).await {
                Ok(connection) => {
                    let _ = connection.close().await;
                    return Ok(());
                }
                Err(e) if started.elapsed() > Duration::from_secs(60) => bail!(
                    "The private PostgreSQL server did not take connections within 60 s ({e}); \
                     its log, {}:\n{}",
                    self.log.display(),
                    tail(&self.log)
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// A fast shutdown (open sessions are ended, the data is checkpointed),
    /// waited for; SIGKILL after 60 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(child.id(), libc::SIGINT);
        let asked = Instant::now();
        while asked.elapsed() < Duration::from_secs(60) {
            if !matches!(child.try_wait(), Ok(None)) {
                tracing::info!("the private PostgreSQL server has stopped");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!("the private PostgreSQL server did not stop within 60 s; killing it");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The lock on `dir`'s `sagaplane.lock`, which holds the PID of its holder.
fn lock(dir: &Path) -> anyhow::Result<File> {
    let path = dir.join("sagaplane.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("Failed to open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => String::new(),
                pid => format!(" (PID {pid})"),
            };
            bail!(
                "Another sagaplane{holder} is running a private PostgreSQL server on {}: \
                 stop it first, or give this one another folder (database.private_dir) \
                 or a database.url",
                dir.display()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("Failed to lock {}", path.display()))
        }
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    Ok(file)
}

/// `initdb` into a fresh folder beside `data`, renamed to `data` once
/// complete: an interrupted first start leaves no half-made cluster.
fn init(
    dir: &Path,
    data: &Path,
    owner: Option<(u32, u32)>,
    mut initdb: Command,
) -> anyhow::Result<()> {
    let fresh = dir.join("pgdata.new");
    if fresh.exists() {
        std::fs::remove_dir_all(&fresh)
            .with_context(|| format!("Failed to remove {}", fresh.display()))?;
    }
    std::fs::DirBuilder::new().mode(0o700).create(&fresh)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&fresh, Some(uid), Some(gid))
            .with_context(|| format!("Failed to give {} to user postgres", fresh.display()))?;
    }
    let out = initdb
        .arg("-D")
        .arg(&fresh)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
        .output()
        .context("Failed to run initdb")?;
    if !out.status.success() {
        let hint = if owner.is_some() {
            format!(
                " (it runs as the user postgres, which must be able to reach {})",
                dir.display()
            )
        } else {
            String::new()
        };
        bail!(
            "initdb failed ({}){hint}:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::rename(&fresh, data)
        .with_context(|| format!("Failed to rename {} to {}", fresh.display(), data.display()))
}

/// A server a sagaplane that died left running on `data` (the lock is ours,
/// so no living sagaplane uses it) is shut down; a stale `postmaster.pid`
/// whose PID now belongs to another program is removed (PostgreSQL would
/// take that program for a server and refuse to start).
fn stop_leftover(data: &Path) -> anyhow::Result<()> {
    let pid_file = data.join("postmaster.pid");
    let Some(pid) = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|text| text.lines().next()?.trim().parse::<u32>().ok())
    else {
        return Ok(());
    };
    let ours = std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        args.first().is_some_and(|a| a.ends_with(b"postgres"))
            && args.contains(&data.as_os_str().as_encoded_bytes())
    });
    if !ours {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return Ok(()); // Dead: PostgreSQL handles that itself.
        }
        if Path::new("/proc/self").exists() {
            std::fs::remove_file(&pid_file)
                .with_context(|| format!("Failed to remove the stale {}", pid_file.display()))?;
        }
        return Ok(());
    }
    tracing::warn!(
        pid,
        "stopping the private PostgreSQL server left running by an earlier sagaplane"
    );
    signal(pid, libc::SIGINT);
    let asked = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        if asked.elapsed() > Duration::from_secs(60) {
            signal(pid, libc::SIGKILL);
            bail!(
                "The private PostgreSQL server left running by an earlier sagaplane (PID {pid}) \
                 did not stop within 60 s"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn signal(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(pid, signal) };
    }
}

/// On Linux the kernel sends the server SIGINT (a fast shutdown) when
/// sagaplane's main thread ends, however it ends (even SIGKILL).
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    // SAFETY: getpid is async-signal-safe and cannot fail.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes async-signal-safe calls (prctl, getppid).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("sagaplane exited"));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_: &mut Command) {}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// `text` for a URL's query: every byte but unreserved ones and `/` escaped.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_folder_is_escaped_in_the_url() {
        assert_eq!(percent_encode("/tmp/a b/ü&x"), "/tmp/a%20b/%C3%BC%26x");
        let options: PgConnectOptions = format!(
            "postgres://postgres@localhost:5432/sagaplane?host={}",
            percent_encode("/tmp/a b")
        )
        .parse()
        .unwrap();
        assert_eq!(
            options.get_socket(),
            Some(&PathBuf::from("/tmp/a b")),
            "the host is the socket's folder"
        );
        assert_eq!(options.get_database(), Some("sagaplane"));
    }

    #[test]
    fn with_nothing_installed_the_error_says_what_to_install_or_set() {
        let message = not_installed(NOTHING_ANSWERS);
        for needed in [
            "apt install postgresql",
            "database.postgres_bin",
            "database.url",
            "/usr/lib/postgresql/*/bin",
        ] {
            assert!(message.contains(needed), "{needed}: {message}");
        }
        let readme = include_str!("../../README.md");
        assert!(
            readme.contains(&format!("Error: {message}\n")),
            "README.md quotes the message as it is"
        );
    }
}
