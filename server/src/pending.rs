//! Sockets the node has accepted that are not WebSockets (yet): connections
//! reading or answering HTTP requests, and upgrades in progress.
//!
//! They hold a file descriptor and buffers but no `MAX_CONNECTIONS` slot, so
//! without a bound of their own a client could open them until the process
//! runs out of file descriptors and nobody can connect. [`Pending`] counts
//! them overall and per client address; the accept loop refuses a socket that
//! would go over either limit, and each admitted one holds a [`PendingSlot`]
//! until it is closed or upgraded.
//!
//! IPv6 clients are counted per /64, the block one host usually holds, so that
//! stepping through addresses of one network does not multiply the limit.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// Why a socket was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `MAX_PENDING_CONNECTIONS` sockets are pending.
    Total,
    /// `MAX_PENDING_PER_IP` sockets from this address are pending.
    PerAddress,
}

impl Refused {
    /// The `reason` label of `switchboard_connections_rejected`, and the
    /// `error` of the 503 answer.
    pub fn reason(self) -> &'static str {
        match self {
            Refused::Total => "pending_limit",
            Refused::PerAddress => "pending_ip_limit",
        }
    }
}

/// The count of pending sockets, overall and per client address.
pub struct Pending {
    max_total: usize,
    max_per_address: usize,
    shared: Arc<Shared>,
}

struct Shared {
    // A std Mutex: it guards a counter and a map lookup, is never held across
    // an `.await`, and is taken once per accepted and per closed socket.
    counts: Mutex<Counts>,
    idle: Notify,
}

#[derive(Default)]
struct Counts {
    total: usize,
    /// Only addresses with at least one pending socket, so the map holds at
    /// most `max_total` entries.
    per_address: HashMap<IpAddr, usize>,
}

impl Shared {
    fn counts(&self) -> MutexGuard<'_, Counts> {
        // Poisoning would only mean a panic between two integer updates.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Pending {
    /// Limits of `max_total` sockets, `max_per_address` of them from one
    /// client address.
    pub fn new(max_total: usize, max_per_address: usize) -> Self {
        Self {
            max_total,
            max_per_address,
            shared: Arc::new(Shared {
                counts: Mutex::new(Counts::default()),
                idle: Notify::new(),
            }),
        }
    }

    /// Admits one socket from `ip` if both limits allow it.
    pub fn try_admit(&self, ip: IpAddr) -> Result<PendingSlot, Refused> {
        let key = address_key(ip);
        let mut counts = self.shared.counts();
        if counts.total >= self.max_total {
            return Err(Refused::Total);
        }
        let mine = counts.per_address.entry(key).or_insert(0);
        if *mine >= self.max_per_address {
            return Err(Refused::PerAddress);
        }
        *mine += 1;
        counts.total += 1;
        Ok(PendingSlot {
            key,
            shared: self.shared.clone(),
        })
    }

    /// Sockets pending now.
    pub fn count(&self) -> usize {
        self.shared.counts().total
    }

    /// Waits until no socket is pending.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.shared.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One admitted socket; dropping it (socket closed or upgraded) frees its place.
pub struct PendingSlot {
    key: IpAddr,
    shared: Arc<Shared>,
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut counts = self.shared.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_address.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.per_address.remove(&self.key);
            }
        }
        let idle = counts.total == 0;
        drop(counts);
        if idle {
            self.shared.idle.notify_waiters();
        }
    }
}

/// The address a socket is counted under: IPv4 as is (also when it arrives
/// IPv4-mapped on a dual-stack listener), IPv6 by its /64.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_address_and_total_limits() {
        let p = Pending::new(3, 2);
        let a1 = p.try_admit(ip("10.0.0.1")).unwrap();
        let _a2 = p.try_admit(ip("10.0.0.1")).unwrap();
        assert_eq!(p.try_admit(ip("10.0.0.1")).err(), Some(Refused::PerAddress));
        let _b1 = p.try_admit(ip("10.0.0.2")).unwrap();
        assert_eq!(p.try_admit(ip("10.0.0.3")).err(), Some(Refused::Total));
        assert_eq!(p.count(), 3);
        drop(a1);
        assert_eq!(p.count(), 2);
        let _a3 = p.try_admit(ip("10.0.0.1")).unwrap();
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let p = Pending::new(10, 1);
        let _a = p.try_admit(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            p.try_admit(ip("2001:db8:1:2:ffff::9")).err(),
            Some(Refused::PerAddress)
        );
        let _b = p.try_admit(ip("2001:db8:1:3::1")).unwrap();
        let _c = p.try_admit(ip("192.0.2.7")).unwrap();
        assert_eq!(
            p.try_admit(ip("::ffff:192.0.2.7")).err(),
            Some(Refused::PerAddress)
        );
    }

    #[test]
    fn released_addresses_leave_the_map() {
        let p = Pending::new(10, 10);
        let slots: Vec<_> = (0..5)
            .map(|i| p.try_admit(ip(&format!("10.0.0.{i}"))).unwrap())
            .collect();
        drop(slots);
        assert_eq!(p.count(), 0);
        assert!(p.shared.counts().per_address.is_empty());
    }

    #[tokio::test]
    async fn wait_idle_returns_when_the_last_slot_goes() {
        let p = Arc::new(Pending::new(10, 10));
        let slot = p.try_admit(ip("127.0.0.1")).unwrap();
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move { p.wait_idle().await })
        };
        drop(slot);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("wait_idle returned")
            .unwrap();
    }
}
