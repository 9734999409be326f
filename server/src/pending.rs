//! Sockets the node has accepted that are not WebSockets (yet): connections
//! reading or answering HTTP requests, and upgrades in progress.
//!
//! They hold a file descriptor and buffers but no `MAX_CONNECTIONS` slot, so
//! without a bound of their own a client could open them until the process
//! runs out of file descriptors and nobody can connect. [`Pending`] bounds
//! them two ways:
//! - per client address (`MAX_PENDING_PER_IP`): a new socket from an address
//!   at its limit is refused, so one client cannot fill the node;
//! - per node (`MAX_PENDING_CONNECTIONS`): when the node is full, the oldest
//!   pending socket is closed to make room for the new one. Refusing the new
//!   one instead would let clients that hold sockets open from many addresses
//!   lock everyone else out until their sockets time out; evicting the oldest
//!   means they would have to open sockets faster than real clients finish
//!   their handshakes (milliseconds) to keep anyone out.
//!
//! Each admitted socket holds a [`PendingSlot`] until it closes or upgrades,
//! and watches its [`Admitted::evicted`] signal.
//!
//! IPv6 clients are counted per /64, the block one host usually holds, so that
//! stepping through addresses of one network does not multiply the limit.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{oneshot, Notify};

/// A socket refused because `MAX_PENDING_PER_IP` sockets from its address
/// are pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

impl Refused {
    /// The `reason` label of `switchboard_connections_rejected`, and the
    /// `error` of the 503 answer.
    pub const REASON: &'static str = "pending_ip_limit";
}

/// An admitted socket.
pub struct Admitted {
    /// Its place in the count; drop it when the socket closes or upgrades.
    pub slot: PendingSlot,
    /// Resolves when the socket must be closed to make room for a newer one.
    pub evicted: oneshot::Receiver<()>,
    /// Whether admitting it evicted the oldest pending socket.
    pub made_room: bool,
}

/// The count of pending sockets, overall and per client address.
pub struct Pending {
    max_total: usize,
    max_per_address: usize,
    shared: Arc<Shared>,
}

struct Shared {
    // A std Mutex: it guards a few map operations, is never held across an
    // `.await`, and is taken once per accepted and per closed socket.
    state: Mutex<State>,
    idle: Notify,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Pending sockets by admission order (ids only grow), oldest first.
    open: BTreeMap<u64, Open>,
    /// Only addresses with at least one pending socket, so the map holds at
    /// most `max_total` entries.
    per_address: HashMap<IpAddr, usize>,
}

struct Open {
    key: IpAddr,
    evict: oneshot::Sender<()>,
}

impl State {
    /// Forgets socket `id` and returns its entry (`None` if already evicted).
    fn remove(&mut self, id: u64) -> Option<Open> {
        let open = self.open.remove(&id)?;
        if let Some(n) = self.per_address.get_mut(&open.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_address.remove(&open.key);
            }
        }
        Some(open)
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Poisoning would only mean a panic between two map updates.
        crate::sync::lock(&self.state)
    }
}

impl Pending {
    /// At most `max_total` sockets, `max_per_address` of them from one client
    /// address (`max_per_address <= max_total`, both at least 1).
    pub fn new(max_total: usize, max_per_address: usize) -> Self {
        Self {
            max_total: max_total.max(1),
            max_per_address,
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                idle: Notify::new(),
            }),
        }
    }

    /// Admits one socket from `ip`, evicting the oldest pending socket when
    /// the node is full; refuses it when its address is at its limit.
    pub fn try_admit(&self, ip: IpAddr) -> Result<Admitted, Refused> {
        let key = address_key(ip);
        let mut state = self.shared.state();
        if state.per_address.get(&key).copied().unwrap_or(0) >= self.max_per_address {
            return Err(Refused);
        }
        let mut made_room = false;
        while state.open.len() >= self.max_total {
            let Some(oldest) = state.open.keys().next().copied() else {
                break;
            };
            if let Some(open) = state.remove(oldest) {
                // Its receiver is gone only if its task has ended already.
                let _ = open.evict.send(());
                made_room = true;
            }
        }
        let id = state.next_id;
        state.next_id += 1;
        let (evict, evicted) = oneshot::channel();
        state.open.insert(id, Open { key, evict });
        *state.per_address.entry(key).or_insert(0) += 1;
        Ok(Admitted {
            slot: PendingSlot {
                id,
                shared: self.shared.clone(),
            },
            evicted,
            made_room,
        })
    }

    /// Sockets pending now.
    pub fn count(&self) -> usize {
        self.shared.state().open.len()
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
    id: u64,
    shared: Arc<Shared>,
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        state.remove(self.id);
        let idle = state.open.is_empty();
        drop(state);
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
    fn per_address_limit_refuses() {
        let p = Pending::new(10, 2);
        let a1 = p.try_admit(ip("10.0.0.1")).unwrap();
        let _a2 = p.try_admit(ip("10.0.0.1")).unwrap();
        assert_eq!(p.try_admit(ip("10.0.0.1")).err(), Some(Refused));
        let _b1 = p.try_admit(ip("10.0.0.2")).unwrap();
        assert_eq!(p.count(), 3);
        drop(a1);
        assert_eq!(p.count(), 2);
        let _a3 = p.try_admit(ip("10.0.0.1")).unwrap();
    }

    #[test]
    fn a_full_node_evicts_the_oldest() {
        let p = Pending::new(2, 2);
        let mut first = p.try_admit(ip("10.0.0.1")).unwrap();
        let mut second = p.try_admit(ip("10.0.0.2")).unwrap();
        assert!(!second.made_room);
        let mut third = p.try_admit(ip("10.0.0.3")).unwrap();
        assert!(third.made_room);
        assert_eq!(first.evicted.try_recv(), Ok(()));
        assert!(second.evicted.try_recv().is_err());
        assert!(third.evicted.try_recv().is_err());
        assert_eq!(p.count(), 2);
        // The evicted socket's address no longer counts it, and dropping its
        // slot later changes nothing.
        let _again = p.try_admit(ip("10.0.0.1")).unwrap();
        assert_eq!(second.evicted.try_recv(), Ok(()));
        drop(first.slot);
        assert_eq!(p.count(), 2);
        assert_eq!(p.shared.state().per_address.len(), 2);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let p = Pending::new(10, 1);
        let _a = p.try_admit(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(p.try_admit(ip("2001:db8:1:2:ffff::9")).err(), Some(Refused));
        let _b = p.try_admit(ip("2001:db8:1:3::1")).unwrap();
        let _c = p.try_admit(ip("192.0.2.7")).unwrap();
        assert_eq!(p.try_admit(ip("::ffff:192.0.2.7")).err(), Some(Refused));
    }

    #[test]
    fn released_addresses_leave_the_maps() {
        let p = Pending::new(10, 10);
        let admitted: Vec<_> = (0..5)
            .map(|i| p.try_admit(ip(&format!("10.0.0.{i}"))).unwrap())
            .collect();
        drop(admitted);
        assert_eq!(p.count(), 0);
        assert!(p.shared.state().per_address.is_empty());
    }

    #[tokio::test]
    async fn wait_idle_returns_when_the_last_slot_goes() {
        let p = Arc::new(Pending::new(10, 10));
        let admitted = p.try_admit(ip("127.0.0.1")).unwrap();
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move { p.wait_idle().await })
        };
        drop(admitted);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("wait_idle returned")
            .unwrap();
    }
}
