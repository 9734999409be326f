//! Fuzz target: text frames of one connection through the parser and the pure
//! validation of each request kind (see `src/lib.rs` for the invariants).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    switchboard_fuzz::run(data);
});
