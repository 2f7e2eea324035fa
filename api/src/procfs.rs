//! What Linux's `/proc` says of a process: its resident memory and the CPU
//! time it (and its reaped children) used. `None` where there is no `/proc`
//! or no such process.

/// Clock ticks per second of `/proc/*/stat` (`USER_HZ`): 100 on every
/// architecture Linux runs on today.
const TICKS_PER_SECOND: f64 = 100.0;

/// Fields of `stat`, numbered as proc(5) does: user and system time of the
/// process, and of its children it reaped.
const UTIME: usize = 14;
const STIME: usize = 15;
const CUTIME: usize = 16;
const CSTIME: usize = 17;
const PPID: usize = 4;

/// Which process: this one, or another by id.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Process {
    Own,
    Id(u32),
}

impl Process {
    fn path(self, file: &str) -> String {
        match self {
            Process::Own => format!("/proc/self/{file}"),
            Process::Id(pid) => format!("/proc/{pid}/{file}"),
        }
    }

    /// Resident memory in bytes (`VmRSS`).
    pub(crate) fn resident_bytes(self) -> Option<u64> {
        let status = std::fs::read_to_string(self.path("status")).ok()?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    }

    /// The fields of `stat` after the command name (which may hold spaces
    /// and parentheses), so that field N of proc(5) is `[N - 3]`.
    fn stat(self) -> Option<Vec<String>> {
        let stat = std::fs::read_to_string(self.path("stat")).ok()?;
        let (_, rest) = stat.rsplit_once(')')?;
        Some(rest.split_whitespace().map(str::to_owned).collect())
    }

    /// The command name (`comm`).
    fn name(self) -> Option<String> {
        let comm = std::fs::read_to_string(self.path("comm")).ok()?;
        Some(comm.trim_end().to_owned())
    }

    /// CPU seconds (user + system) of all the process's threads.
    pub(crate) fn cpu_seconds(self) -> Option<f64> {
        self.seconds(&[UTIME, STIME])
    }

    /// CPU seconds of the process and of its children that have ended
    /// (`cutime` + `cstime`, counted once the process reaped them).
    fn cpu_seconds_with_reaped(self) -> Option<f64> {
        self.seconds(&[UTIME, STIME, CUTIME, CSTIME])
    }

    /// The sum of these `stat` fields (clock ticks), in seconds.
    fn seconds(self, fields: &[usize]) -> Option<f64> {
        let stat = self.stat()?;
        let ticks: f64 = fields
            .iter()
            .map(|&n| field(&stat, n))
            .sum::<Option<f64>>()?;
        Some(ticks / TICKS_PER_SECOND)
    }

    fn parent(self) -> Option<u32> {
        field(&self.stat()?, PPID).map(|p| p as u32)
    }
}

/// Field `n` of proc(5)'s `stat` (1-based, as the manual counts).
fn field(after_name: &[String], n: usize) -> Option<f64> {
    after_name.get(n.checked_sub(3)?)?.parse().ok()
}

/// CPU seconds used by a whole PostgreSQL server, found by one of its
/// backends' process ids: its postmaster with every child that ended, and
/// every child running now (backends, WAL writer, checkpointer, autovacuum).
/// `None` unless the backend is a `postgres` process on this machine.
pub(crate) fn postgres_cpu_seconds(backend: u32) -> Option<f64> {
    let backend = Process::Id(backend);
    if backend.name()? != "postgres" {
        return None;
    }
    let postmaster = backend.parent()?;
    let mut total = Process::Id(postmaster).cpu_seconds_with_reaped()?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let child = Process::Id(pid);
        if child.parent() == Some(postmaster) {
            total += child.cpu_seconds().unwrap_or(0.0);
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        assert!(Process::Own.resident_bytes().unwrap() > 0);
        // Busy until /proc shows this thread's CPU time grow (on a loaded
        // machine that takes longer than the same time on a clock).
        let before = Process::Own.cpu_seconds().unwrap();
        let started = std::time::Instant::now();
        let mut x = 0u64;
        let mut after = before;
        while after - before < 0.05 && started.elapsed() < std::time::Duration::from_secs(20) {
            for _ in 0..1_000_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            after = Process::Own.cpu_seconds().unwrap();
        }
        assert!(after - before >= 0.05, "{before} → {after}");
        let own = std::process::id();
        assert_eq!(
            Process::Id(own).parent(),
            Some(std::os::unix::process::parent_id())
        );
    }

    #[test]
    fn finds_no_postgres_in_a_process_that_is_not_one() {
        assert_eq!(postgres_cpu_seconds(std::process::id()), None);
        assert_eq!(postgres_cpu_seconds(u32::MAX), None);
    }
}
