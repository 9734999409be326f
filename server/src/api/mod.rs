//! The server API for application backends (`/api/v1`, docs/protocol.md).
//!
//! This branch carries only the history read ([`events`]); it is mounted by
//! `http.rs` behind the admin token until the API-key router takes it over.

pub mod events;
