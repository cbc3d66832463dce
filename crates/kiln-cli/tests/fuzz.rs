//! The run records the CLI reads back (`config.json`, `scaler.json`) fed mutated and random
//! bytes: `kiln eval` fails with an error naming the file, or evaluates; it never panics.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use common::{kiln, kiln_raw, scratch};
use proptest::prelude::*;

const CASES: u32 = 32;

/// A one-epoch digits run, made once; its config.json and scaler.json.
fn run() -> &'static (PathBuf, Vec<u8>, Vec<u8>) {
    static RUN: OnceLock<(PathBuf, Vec<u8>, Vec<u8>)> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = scratch("fuzz-run");
        kiln(&[
            "train",
            "--quiet",
            "--epochs",
            "1",
            "--hidden",
            "8",
            "--out",
            dir.to_str().unwrap(),
        ]);
        let config = std::fs::read(dir.join("config.json")).unwrap();
        let scaler = std::fs::read(dir.join("scaler.json")).unwrap();
        (dir, config, scaler)
    })
}

fn mutate(bytes: &[u8], writes: &[(usize, u8)], cut: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for &(at, b) in writes {
        let at = at % out.len();
        out[at] = b;
    }
    let keep = out.len().saturating_sub(cut % (out.len() / 4 + 1));
    out.truncate(keep);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn mutated_run_records(which in 0usize..2,
                           writes in prop::collection::vec((any::<usize>(), any::<u8>()), 1..5),
                           cut in any::<usize>(),
                           random in prop::option::of(prop::collection::vec(any::<u8>(), 0..64))) {
        let (template, config, scaler) = run();
        let dir = scratch("fuzz-case");
        for name in ["model.bpk", "config.json", "scaler.json"] {
            std::fs::copy(template.join(name), dir.join(name)).unwrap();
        }
        let (name, valid) = if which == 0 { ("config.json", config) } else { ("scaler.json", scaler) };
        let bytes = random.unwrap_or_else(|| mutate(valid, &writes, cut));
        std::fs::write(dir.join(name), bytes).unwrap();
        let o = kiln_raw(&["eval", "--run", dir.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        prop_assert!(!err.contains("panicked"), "{}", err);
        prop_assert_ne!(o.status.code(), Some(101), "{}", err);
        if !o.status.success() {
            prop_assert!(err.starts_with("error:"), "{}", err);
        }
    }
}
