//! A room of the embedded backend and its peers: who is in it, each peer's
//! `seq` and replay buffer, and delivery into the peers' outboxes. Only ever
//! touched under the room's lock (see the parent module).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::outbox::Utf8Bytes;

use crate::backend::budget::{Body, Entry, Meter};
use crate::backend::{not_joined, peer_not_found, Member};
use crate::limits::Limits;
use crate::outbox::Outbox;
use crate::protocol::{stamp, EventBody, MessageType, PeerInfo, ProtocolError, RoomState};

#[derive(Default)]
pub(super) struct Room {
    pub(super) peers: HashMap<String, Peer>,
    pub(super) state: RoomState,
    /// Join order, so listings are stable.
    pub(super) joins: u64,
    /// When the room got its first peer (Unix ms).
    pub(super) created_at: u64,
    /// Set when the room was dropped from the map; a join that raced with the
    /// removal looks the room up again.
    pub(super) removed: bool,
    /// Replay bytes of this room's buffers (bodies once, plus overheads).
    pub(super) meter: Arc<Meter>,
    /// `meter` as last added to the node's total.
    pub(super) reported: usize,
    /// Buffers dropped for the room budget since the lock was taken.
    pub(super) dropped: u64,
}

pub(super) struct Peer {
    pub(super) info: PeerInfo,
    pub(super) order: u64,
    pub(super) secret_hash: [u8; 32],
    pub(super) attachment: u64,
    /// Last seq assigned to an event for this peer.
    pub(super) seq: u64,
    /// Recent events, for replay on resume.
    pub(super) buffer: VecDeque<Entry>,
    /// Body bytes of `buffer` (the per-peer budget's measure).
    pub(super) buffer_bytes: usize,
    /// The connection's queue while attached.
    pub(super) outbox: Option<Arc<Outbox>>,
    /// Last seq written to the socket when it detached.
    pub(super) written_seq: u64,
}

impl Peer {
    pub(super) fn deliver(&mut self, kind: MessageType, body: &Arc<Body>, limits: &Limits) {
        self.seq += 1;
        if let Some(outbox) = &self.outbox {
            // An overflow closes that connection; the event stays buffered.
            let text = Utf8Bytes::from(stamp(self.seq, body.text()));
            let _ = outbox.event(self.seq, kind, text);
        }
        let entry = Entry::new(self.seq, kind, body);
        self.buffer_bytes += entry.body_len();
        self.buffer.push_back(entry);
        while self.buffer.len() > limits.recovery_buffer_events
            || self.buffer_bytes > limits.recovery_buffer_bytes
        {
            match self.buffer.pop_front() {
                Some(e) => self.buffer_bytes -= e.body_len(),
                None => break,
            }
        }
    }

    /// Forgets every buffered event (a budget was exceeded): a resume from
    /// before now is no longer recoverable, one from now on is.
    pub(super) fn drop_buffer(&mut self) {
        // A new deque, so that its capacity is freed too.
        self.buffer = VecDeque::new();
        self.buffer_bytes = 0;
    }

    /// Pushes every buffered event after `from` into `outbox`; false when the
    /// buffer no longer reaches back to `from + 1`.
    pub(super) fn replay(&self, from: u64, outbox: &Outbox) -> bool {
        if from >= self.seq {
            outbox.set_last_seq(self.seq);
            return true;
        }
        let oldest = self.buffer.front().map_or(u64::MAX, |e| e.seq);
        if oldest > from + 1 {
            outbox.set_last_seq(self.seq);
            return false;
        }
        outbox.set_last_seq(from);
        for e in self.buffer.iter().filter(|e| e.seq > from) {
            let text = Utf8Bytes::from(stamp(e.seq, e.body()));
            let _ = outbox.event(e.seq, e.kind, text);
        }
        true
    }
}

impl Room {
    pub(super) fn others(&self, me: &str) -> Vec<PeerInfo> {
        let mut list: Vec<(&u64, &PeerInfo)> = self
            .peers
            .values()
            .filter(|p| p.info.peer != me)
            .map(|p| (&p.order, &p.info))
            .collect();
        list.sort_by_key(|(order, _)| **order);
        list.into_iter().map(|(_, info)| info.clone()).collect()
    }

    /// Delivers `event` to every peer but `me` (to everyone with `None`),
    /// storing its body once for all of their buffers.
    pub(super) fn deliver_all_but(&mut self, me: Option<&str>, event: &EventBody, limits: &Limits) {
        let body = Body::new(&event.json, &self.meter);
        for peer in self.peers.values_mut() {
            if Some(peer.info.peer.as_str()) != me {
                peer.deliver(event.kind, &body, limits);
            }
        }
        drop(body);
        self.enforce_budget(limits.room_recovery_bytes);
    }

    /// Delivers `event` to peer `to`.
    pub(super) fn deliver_to(
        &mut self,
        to: &str,
        event: &EventBody,
        limits: &Limits,
    ) -> Result<(), ProtocolError> {
        let peer = self.peers.get_mut(to).ok_or_else(|| peer_not_found(to))?;
        let body = Body::new(&event.json, &self.meter);
        peer.deliver(event.kind, &body, limits);
        drop(body);
        self.enforce_budget(limits.room_recovery_bytes);
        Ok(())
    }

    /// Drops the largest buffer of the room; false when all are empty.
    pub(super) fn drop_largest_buffer(&mut self) -> bool {
        let largest = self
            .peers
            .values_mut()
            .filter(|p| !p.buffer.is_empty())
            .max_by_key(|p| p.buffer_bytes);
        match largest {
            Some(peer) => {
                peer.drop_buffer();
                self.dropped += 1;
                true
            }
            None => false,
        }
    }

    /// Drops buffers, largest first, until the room is within `budget`.
    pub(super) fn enforce_budget(&mut self, budget: usize) {
        while self.meter.bytes() > budget && self.drop_largest_buffer() {}
    }

    /// The member's peer, if the member is its current attachment.
    pub(super) fn member(&mut self, member: &Member) -> Result<&mut Peer, ProtocolError> {
        match self.peers.get_mut(&member.peer) {
            Some(p) if p.attachment == member.attachment => Ok(p),
            _ => Err(not_joined()),
        }
    }
}
