//! Switchboard signaling server library (being built).
