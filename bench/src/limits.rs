//! Open-files limit. Each connection is one file descriptor, so a run of N
//! connections needs the soft limit above N; it is raised to the hard limit (and
//! the hard limit itself where the process may, e.g. as root) before connecting.

use rlimit::Resource;

/// Descriptors kept free for the runtime, stdio and resolvers.
const SPARE_FDS: u64 = 256;

/// Makes room for `connections` sockets, or explains how to.
pub fn ensure_open_files(connections: usize) -> anyhow::Result<()> {
    let needed = connections as u64 + SPARE_FDS;
    let (soft, hard) = Resource::NOFILE.get()?;
    if soft >= needed {
        return Ok(());
    }
    if hard >= needed {
        Resource::NOFILE.set(needed.max(soft), hard)?;
        return Ok(());
    }
    // Raising the hard limit needs privilege; try, then explain.
    if Resource::NOFILE.set(needed, needed).is_ok() {
        return Ok(());
    }
    let _ = Resource::NOFILE.set(hard, hard);
    anyhow::bail!(
        "{connections} connections need {needed} open files but the hard limit is {hard}; \
         raise it (e.g. `ulimit -n {needed}` in the shell, as root or via limits.conf) and retry"
    )
}
