//! The Redis backend (cluster mode). Under construction.
