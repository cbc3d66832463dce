//! kiln-train's own file parsers fed random and mutated bytes: checkpoints (resume) and
//! `history.csv` return errors or data, never panic.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::tensor::Device;
use kiln_datasets::{Data, Standardizer, digits, split};
use kiln_fnn::MlpConfig;
use kiln_train::{History, Task, Trainer, TrainerConfig, Verbosity};
use proptest::prelude::*;

const CASES: u32 = 48;

fn data() -> &'static Data {
    static DATA: OnceLock<Data> = OnceLock::new();
    DATA.get_or_init(|| {
        let mut train = split(&digits(), 0.5, 0).unwrap().first;
        Standardizer::fit(&train).transform(&mut train).unwrap();
        train
    })
}

fn config() -> TrainerConfig {
    TrainerConfig {
        epochs: 2,
        batch_size: 64,
        verbosity: Verbosity::Quiet,
        ..TrainerConfig::new(Task::Classification)
    }
}

fn model() -> kiln_fnn::Mlp {
    MlpConfig::new(64, vec![16], 10).init(&Device::flex())
}

/// A complete checkpoint of a 2-epoch run, made once: (file name, bytes) of epoch-2's files.
fn checkpoint() -> &'static Vec<(String, Vec<u8>)> {
    static FILES: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("kiln-fuzz-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Trainer::new(config(), Device::flex())
            .unwrap()
            .with_checkpoints(&dir)
            .fit(model(), data())
            .unwrap();
        let epoch = dir.join("epoch-2");
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&epoch)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        std::fs::remove_dir_all(dir).unwrap();
        files
    })
}

fn write_checkpoint(dir: &Path, files: &[(String, Vec<u8>)], latest: &[u8]) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("epoch-2")).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join("epoch-2").join(name), bytes).unwrap();
    }
    std::fs::write(dir.join("latest"), latest).unwrap();
}

fn scratch(case: &str) -> PathBuf {
    std::env::temp_dir().join(format!("kiln-fuzz-{case}-{}", std::process::id()))
}

/// Overwrites a few bytes of `bytes`, removes some and cuts the tail.
fn mutate(bytes: &[u8], writes: &[(usize, u8)], cut: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for &(at, b) in writes {
        if !out.is_empty() {
            let at = at % out.len();
            out[at] = b;
        }
    }
    let keep = out.len().saturating_sub(cut % (out.len() / 4 + 1));
    out.truncate(keep);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// One file of the checkpoint mutated (or `latest` replaced by random bytes): resuming
    /// returns an error or trains on, and never panics.
    #[test]
    fn mutated_checkpoints(file in 0usize..6,
                           writes in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6),
                           cut in any::<usize>(),
                           latest in prop::collection::vec(any::<u8>(), 0..12)) {
        let mut files = checkpoint().clone();
        let latest = if file == files.len() { latest } else { b"2\n".to_vec() };
        if let Some((_, bytes)) = files.get_mut(file) {
            *bytes = mutate(bytes, &writes, cut);
        }
        let dir = scratch("resume");
        write_checkpoint(&dir, &files, &latest);
        let outcome = std::panic::catch_unwind(|| {
            Trainer::new(config(), Device::flex())
                .unwrap()
                .with_checkpoints(&dir)
                .resuming()
                .fit(model(), data())
                .map(|_| ())
        });
        prop_assert!(outcome.is_ok(), "resuming panicked");
        if let Ok(Err(e)) = outcome {
            let text = e.to_string();
            prop_assert!(text.contains("kiln-fuzz-resume"), "the error names the file: {}", text);
        }
    }

    #[test]
    fn history_csv(text in "[0-9a-z_,.\\-\n]{0,200}") {
        let _ = History::from_csv(&text);
    }

    #[test]
    fn mutated_history_csv(writes in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6),
                           cut in any::<usize>()) {
        let valid = format!("{}\n1,0.5,0.9,0.4,0.91,0.001,1.0\n2,0.3,0.95,0.35,0.93,0.001,1.0\n",
                            History::CSV_HEADER);
        let bytes = mutate(valid.as_bytes(), &writes, cut);
        let _ = History::from_csv(&String::from_utf8_lossy(&bytes));
    }
}
