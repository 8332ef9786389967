//! Every committed fuzz seed (`fuzz/seeds/<target>/*`) through its checker, so the regular test
//! suite guards what the fuzzers once found, without libFuzzer.

use std::path::PathBuf;

use switchyard_fuzz_checks::{TARGETS, check};

fn seeds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds")
}

fn run_seeds(target: &str) {
    let dir = seeds_dir().join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
        .map(|entry| entry.expect("readable seed directory").path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 3,
        "{}: expected a handful of seeds, found {}",
        dir.display(),
        files.len()
    );
    for file in files {
        let data = std::fs::read(&file)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", file.display()));
        eprintln!("{target}: {}", file.display());
        assert_eq!(check(target, &data), Some(()), "{target} has no checker");
    }
}

#[test]
fn openai_request_seeds() {
    run_seeds("openai_request");
}

#[test]
fn chat_template_seeds() {
    run_seeds("chat_template");
}

#[test]
fn postprocess_seeds() {
    run_seeds("postprocess");
}

#[test]
fn sse_client_seeds() {
    run_seeds("sse_client");
}

#[test]
fn kserve_request_seeds() {
    run_seeds("kserve_request");
}

#[test]
fn tool_parsers_seeds() {
    run_seeds("tool_parsers");
}

#[test]
fn kv_events_seeds() {
    run_seeds("kv_events");
}

#[test]
fn structured_seeds() {
    run_seeds("structured");
}

#[test]
fn every_target_has_seeds_and_a_test() {
    // A new target added to TARGETS needs a seed directory (and a test function above).
    for target in TARGETS {
        assert!(seeds_dir().join(target).is_dir(), "no seeds for {target}");
    }
    assert_eq!(check("no_such_target", b""), None);
}
