//! File descriptors: a member never lets client connections take the descriptors its storage,
//! snapshots and peers need (etcd keeps 150 in reserve the same way). At start the member reads
//! its soft `RLIMIT_NOFILE` and what it already has open; client connections get what is left
//! above the reserve, and a client connecting beyond that is closed at once (and counted), so
//! running out of descriptors is a refused client, never a failed fsync or snapshot.

/// Descriptors kept for everything but client connections: storage files (fjall's journals and
/// tables, snapshot files), peer connections, listeners.
pub const FD_RESERVE: u64 = 150;

/// Fewest client connections allowed whatever the limit says (a member with fewer is useless).
pub const CLIENT_CONNECTIONS_MIN: usize = 16;

/// Below this soft limit the member warns at start: a few hundred clients would exhaust it.
pub const FD_LIMIT_LOW: u64 = 4096;

/// The soft limit on open files, from `/proc/self/limits` (Linux); `None` where unreadable or
/// unlimited.
pub fn fd_soft_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// Descriptors open now, from `/proc/self/fd`.
pub fn fds_open() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

/// The cap on concurrent client connections: `flag` if set (non-zero), else what the soft limit
/// leaves above the reserve and what is open now; `None` when the limit cannot be read and no
/// flag was given (no cap).
pub fn client_connections_max(flag: usize, soft_limit: Option<u64>, open: Option<u64>) -> Option<usize> {
    if flag > 0 {
        return Some(flag);
    }
    let budget = soft_limit?.saturating_sub(FD_RESERVE).saturating_sub(open.unwrap_or(0));
    Some((budget as usize).max(CLIENT_CONNECTIONS_MIN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_the_reserve_and_what_is_open() {
        assert_eq!(client_connections_max(0, Some(1024), Some(24)), Some(850));
        assert_eq!(client_connections_max(0, Some(256), Some(40)), Some(66));
        assert_eq!(client_connections_max(0, Some(100), Some(40)), Some(CLIENT_CONNECTIONS_MIN));
        assert_eq!(client_connections_max(500, Some(100), Some(40)), Some(500));
        assert_eq!(client_connections_max(0, None, Some(40)), None);
    }

    #[test]
    fn this_process_has_a_limit_and_open_files() {
        assert!(fd_soft_limit().is_some_and(|l| l > 0));
        assert!(fds_open().is_some_and(|n| n >= 3));
    }
}
