//! Load generator (being built).
fn main() {}
