//! `switchyard bench replay` end to end: it starts `serve` with mocker workers itself, replays a
//! small synthetic trace whose requests share prefixes, and prints a JSON report.

mod support;

use std::path::PathBuf;

use serde_json::{Value, json};

/// Four conversations of ten turns; each turn re-sends its conversation's earlier blocks
/// (same leading hash ids) and grows by 170 tokens, from 300 to 1,830 tokens.
fn synthetic_trace() -> String {
    let mut lines = Vec::new();
    for turn in 0..10u64 {
        for conversation in 0..4u64 {
            let input_length = 300 + turn * 170;
            let blocks = input_length.div_ceil(512);
            let hash_ids: Vec<u64> = (0..blocks).map(|b| conversation * 1000 + b).collect();
            let index = turn * 4 + conversation;
            lines.push(
                json!({
                    "timestamp": index * 20,
                    "input_length": input_length,
                    "output_length": 4 + index % 5,
                    "hash_ids": hash_ids,
                })
                .to_string(),
            );
        }
    }
    lines.join("\n") + "\n"
}

struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn replays_a_shared_prefix_trace_against_kv_routed_mockers() {
    let trace = TempFile(std::env::temp_dir().join(format!(
        "switchyard-replay-test-{}.jsonl",
        std::process::id()
    )));
    std::fs::write(&trace.0, synthetic_trace()).unwrap();
    let model = support::model_path();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["bench", "replay", "--trace"])
        .arg(&trace.0)
        .arg("--model-path")
        .arg(&model)
        .args([
            "--workers",
            "2",
            "--router-mode",
            "kv",
            "--speedup",
            "10",
            "--block-size",
            "16",
            "--num-gpu-blocks",
            "4096",
            "--max-requests",
            "40",
            "--json",
        ])
        .output()
        .expect("run switchyard bench replay");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "replay failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {stdout}"));

    assert_eq!(report["requests"], 40, "{report}");
    assert_eq!(report["requests_ok"], 40, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    for (field, keys) in [
        ("ttft_ms", &["p50", "p90", "p99"][..]),
        ("itl_ms", &["p50", "p99"][..]),
        ("e2e_ms", &["p50", "p99"][..]),
    ] {
        for key in keys {
            let value = report[field][key].as_f64();
            assert!(
                value.is_some_and(|v| v > 0.0),
                "{field}.{key} missing: {report}"
            );
        }
    }
    assert!(report["ttft_ms"]["p50"].as_f64() <= report["e2e_ms"]["p50"].as_f64());
    assert!(report["requests_per_s"].as_f64().unwrap() > 0.0, "{report}");
    assert!(
        report["output_tokens_per_s"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    // Output lengths 4..=8 cycle over the 40 requests: 8 of each.
    assert_eq!(report["output_tokens"], 8 * (4 + 5 + 6 + 7 + 8), "{report}");
    let hit_rate = report["cache_hit_rate"].as_f64().expect("cache_hit_rate");
    assert!(
        hit_rate > 0.0 && hit_rate < 1.0,
        "turns re-send their conversation's prefix: {report}"
    );
    let shares: Vec<f64> = report["worker_share"]
        .as_array()
        .expect("worker_share")
        .iter()
        .map(|s| s.as_f64().unwrap())
        .collect();
    assert_eq!(shares.len(), 2, "{report}");
    let total: f64 = shares.iter().sum();
    assert!(
        (total - 1.0).abs() < 1e-9,
        "shares sum to {total}: {report}"
    );
    assert_eq!(report["router_mode"], "kv");
    assert_eq!(report["speedup"], 10.0);
}

#[test]
fn a_bad_trace_fails_with_the_line_number_before_starting_serve() {
    let trace = TempFile(std::env::temp_dir().join(format!(
        "switchyard-replay-bad-{}.jsonl",
        std::process::id()
    )));
    std::fs::write(
        &trace.0,
        "{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 1, \"hash_ids\": [1]}\n\
         {\"timestamp\": 5, \"input_length\": 2000, \"output_length\": 1, \"hash_ids\": [1]}\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["bench", "replay", "--trace"])
        .arg(&trace.0)
        .output()
        .expect("run switchyard bench replay");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("line 2") && stderr.contains("needs 4 hash_ids"),
        "{stderr}"
    );
}
