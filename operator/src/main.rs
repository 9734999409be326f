//! Placeholder; the operator crate is built under its own issue.
fn main() {}
