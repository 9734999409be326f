//! The fuzz target's committed seeds, run through the same checks as the
//! fuzzer (`server/fuzz/src/lib.rs`) on every `make test`, without cargo-fuzz
//! or a nightly build.
//!
//! A seed file named `<kind>-<outcome>-<what>.json` holds one frame, and the
//! test also asserts how the server answers it: `ok`, or the error code. Files
//! named `session-*` hold several frames of one connection, one per line. An
//! input the fuzzer once crashed on joins the seeds, named by the answer it
//! should get.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Every kind a frame is counted as; the seeds must hold an accepted and a
/// refused frame of each message type.
const MESSAGE_TYPES: [&str; 8] = [
    "join",
    "leave",
    "signal",
    "broadcast",
    "discover",
    "set_state",
    "update",
    "ping",
];

fn fuzz_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(sub)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn seed_frames_are_answered_as_their_names_say() {
    let seeds = files(&fuzz_dir("seeds/frame"));
    assert!(!seeds.is_empty(), "no seeds in server/fuzz/seeds/frame");
    let mut covered = BTreeSet::new();
    let mut mismatches = Vec::new();
    for path in &seeds {
        let data = std::fs::read(path).unwrap();
        // The checks panic on a broken invariant, naming the frame.
        let outcomes = harness::run(&data);
        let name = path.file_stem().unwrap().to_str().unwrap();
        if name.starts_with("session-") {
            assert!(outcomes.len() > 2, "{name}: a session has several frames");
            continue;
        }
        let mut parts = name.splitn(3, '-');
        let (Some(kind), Some(expected), Some(_)) = (parts.next(), parts.next(), parts.next())
        else {
            panic!("{name}: expected <kind>-<outcome>-<what>");
        };
        assert_eq!(outcomes.len(), 1, "{name}: one frame per seed");
        let got = &outcomes[0];
        let answer = got.error.map_or("ok", |code| code.as_str());
        if got.kind != kind || answer != expected {
            mismatches.push(format!(
                "{name}: answered {answer} as {}, expected {expected} as {kind}",
                got.kind
            ));
        }
        covered.insert((got.kind, got.error.is_none()));
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    for kind in MESSAGE_TYPES {
        for accepted in [true, false] {
            if matches!(kind, "leave" | "ping") && !accepted {
                continue; // no field that could be wrong (a bad `id` is `invalid`)
            }
            assert!(
                covered.contains(&(kind, accepted)),
                "no seed where the server {} a {kind}",
                if accepted { "accepts" } else { "refuses" }
            );
        }
    }
}
