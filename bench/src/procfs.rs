//! Reading another process's memory, CPU time and sleeps from `/proc` (Linux),
//! to tell server cost from load-generator cost on a shared machine.

use std::time::Instant;

/// Kernel clock ticks per second for `/proc/PID/stat` times; 100 on every common
/// Linux build (reading `sysconf(_SC_CLK_TCK)` would need unsafe FFI).
pub const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// Summed resident set size of `pids` in KiB; `None` when no pid is given.
pub fn rss_kib_sum(pids: &[u32]) -> anyhow::Result<Option<u64>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut sum = 0;
    for &pid in pids {
        sum += rss_kib(pid)?;
    }
    Ok(Some(sum))
}

/// Resident set size of `pid` in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS:")
}

/// Peak resident set size of `pid` since it started, in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmHWM:")
}

/// Summed peak resident set size of `pids` in KiB; `None` when no pid is given.
pub fn peak_rss_kib_sum(pids: &[u32]) -> anyhow::Result<Option<u64>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut sum = 0;
    for &pid in pids {
        sum += peak_rss_kib(pid)?;
    }
    Ok(Some(sum))
}

fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status_number(&status, field)
        .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/{pid}/status"))
}

/// The number after `field` in a `/proc/.../status` text (a size in kB or a
/// count).
fn parse_status_number(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// How many times the threads of `pid` went to sleep waiting for something
/// (`voluntary_ctxt_switches`, summed over `/proc/PID/task/*/status`): each
/// is a wake-up later, the cost an event loop pays per batch of work, not per
/// item in it. Threads that ended meanwhile drop out of the sum.
pub fn sleeps(pid: u32) -> anyhow::Result<u64> {
    let mut sum = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        // A thread may end between the listing and the read.
        let Ok(status) = std::fs::read_to_string(task?.path().join("status")) else {
            continue;
        };
        sum += parse_status_number(&status, "voluntary_ctxt_switches:").unwrap_or(0);
    }
    Ok(sum)
}

/// Summed [`sleeps`] of `pids` since [`SleepMeter::of`].
pub struct SleepMeter {
    pids: Vec<u32>,
    start: u64,
}

impl SleepMeter {
    /// Starts counting for `pids`; `None` when there are none (or one cannot
    /// be read).
    pub fn of(pids: &[u32]) -> Option<Self> {
        if pids.is_empty() {
            return None;
        }
        let start = Self::sum(pids).ok()?;
        Some(Self {
            pids: pids.to_vec(),
            start,
        })
    }

    fn sum(pids: &[u32]) -> anyhow::Result<u64> {
        pids.iter().map(|&pid| sleeps(pid)).sum()
    }

    /// Sleeps since the start.
    pub fn count(&self) -> anyhow::Result<u64> {
        Ok(Self::sum(&self.pids)?.saturating_sub(self.start))
    }
}

/// User plus system CPU time of `pid` (or of this process with `None`), in ticks.
pub fn cpu_ticks(pid: Option<u32>) -> anyhow::Result<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(&path)?;
    parse_cpu_ticks(&stat).ok_or_else(|| anyhow::anyhow!("cannot parse {path}"))
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name may hold spaces and parentheses; fields resume after the
    // last `)`. utime and stime are fields 14 and 15, i.e. 12th and 13th after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU use of some processes over an interval, as a share of one core.
pub struct CpuMeter {
    /// `None` stands for this process.
    pids: Vec<Option<u32>>,
    ticks: u64,
    at: Instant,
}

impl CpuMeter {
    /// Starts measuring this process.
    pub fn of_self() -> anyhow::Result<Self> {
        Self::start(vec![None])
    }

    /// Starts measuring the sum of `pids`; `None` when there are none (or one
    /// cannot be read).
    pub fn of(pids: &[u32]) -> Option<Self> {
        if pids.is_empty() {
            return None;
        }
        Self::start(pids.iter().copied().map(Some).collect()).ok()
    }

    fn start(pids: Vec<Option<u32>>) -> anyhow::Result<Self> {
        let ticks = Self::sum(&pids)?;
        Ok(Self {
            pids,
            ticks,
            at: Instant::now(),
        })
    }

    fn sum(pids: &[Option<u32>]) -> anyhow::Result<u64> {
        pids.iter().map(|&pid| cpu_ticks(pid)).sum()
    }

    /// Cores used since the start (1.0 = one core busy all the time).
    pub fn cores(&self) -> anyhow::Result<f64> {
        let ticks = Self::sum(&self.pids)?.saturating_sub(self.ticks);
        let secs = self.at.elapsed().as_secs_f64().max(1e-9);
        Ok(ticks as f64 / CLOCK_TICKS_PER_SEC / secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vmrss() {
        let status = "Name:\tswitchboard\nVmPeak:\t  100 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_status_number(status, "VmRSS:"), Some(12345));
        assert_eq!(parse_status_number("Name: x\n", "VmRSS:"), None);
        assert_eq!(
            parse_status_number("VmHWM:\t  777 kB\n", "VmHWM:"),
            Some(777)
        );
    }

    #[test]
    fn counts_voluntary_sleeps_not_the_involuntary_ones() {
        let status = "Name:\tx\nnonvoluntary_ctxt_switches:\t9\nvoluntary_ctxt_switches:\t41\n";
        assert_eq!(
            parse_status_number(status, "voluntary_ctxt_switches:"),
            Some(41)
        );
        let pid = std::process::id();
        let before = sleeps(pid).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(sleeps(pid).unwrap() > before, "a thread that slept counts");
    }

    #[test]
    fn parses_cpu_ticks_with_odd_command_names() {
        let stat = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert!(cpu_ticks(None).is_ok());
    }
}
