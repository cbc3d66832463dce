//! The tiled attention's promise, measured: a training step's memory grows linearly with the
//! sequence, part by part (the composed attention kept `[batch, heads, seq, seq]` weights, four
//! times the bytes per doubling).

use std::collections::HashMap;
use std::process::Command;

/// Each part's (bytes left allocated, working set) in MB, from the table the binary prints.
fn parts(seq_len: usize) -> HashMap<String, (f64, f64)> {
    let out = Command::new(env!("CARGO_BIN_EXE_memory_by_part"))
        .args(["--seq-len", &seq_len.to_string(), "--batch-size", "32"])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let number = |cell: &str| cell.trim().trim_matches('*').parse::<f64>().ok();
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').collect();
            let [_, part, held, peak, _] = cells[..] else {
                return None;
            };
            let part = part.trim().trim_matches('*').to_string();
            Some((
                part,
                (number(held).unwrap_or(0.0), number(peak).unwrap_or(0.0)),
            ))
        })
        .collect()
}

#[test]
fn a_training_steps_memory_grows_linearly_with_the_sequence() {
    let (short, long) = (parts(512), parts(1024));
    for part in [
        "block 0: self-attention (tiled), dropout",
        "block 0: feed-forward (2 dense, ReLU, dropout)",
        "forward pass, kept for the backward",
    ] {
        let ratio = long[part].0 / short[part].0;
        assert!((1.8..2.2).contains(&ratio), "{part}: {ratio}");
    }
    let step = "whole step, peak above the start";
    let ratio = long[step].1 / short[step].1;
    assert!((1.6..2.2).contains(&ratio), "{step}: {ratio}");
}
