//! Placeholder; the load generator is built under its own task.
fn main() {}
