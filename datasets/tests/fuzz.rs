//! Every file parser fed random and mutated bytes: it returns an error or data, never panics,
//! and never allocates from an unchecked header.
//!
//! Each property runs `CASES` cases (proptest's shrinking reports the smallest failing input).

use std::path::{Path, PathBuf};

use kiln_datasets::{
    CsvOptions, cifar10, digit_recognizer_test, digit_recognizer_train, load_csv,
    load_features_csv, load_series_csv, load_text_csv, load_texts_csv, read_idx,
};
use proptest::prelude::*;

/// Cases per property: random bytes, and mutations of a valid file.
const CASES: u32 = 128;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-fuzz-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A valid file with some bytes overwritten, some removed and the tail cut.
fn mutated(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = valid.len();
    (
        prop::collection::vec((0..len.max(1), any::<u8>()), 0..8),
        prop::collection::vec(0..len.max(1), 0..4),
        0..=len,
    )
        .prop_map(move |(writes, removes, keep)| {
            let mut bytes = valid.clone();
            for (at, byte) in writes {
                if at < bytes.len() {
                    bytes[at] = byte;
                }
            }
            for at in removes {
                if at < bytes.len() {
                    bytes.remove(at);
                }
            }
            bytes.truncate(keep.max(bytes.len() / 2));
            bytes
        })
}

fn random_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..600)
}

/// Bytes that look like a file of this kind: random or mutated from `valid`.
fn inputs(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![random_bytes(), mutated(valid)]
}

fn idx_file() -> Vec<u8> {
    let mut bytes = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 3];
    bytes.extend(0..18u8);
    bytes
}

const TABLE: &str = "a,b,label\n1.0,2.0,cat\n3.5,-1,dog\n0,0,cat\n";
const KAGGLE_TRAIN: &str = "label,pixel0,pixel1,pixel2,pixel3\n3,0,255,12,0\n1,0,0,0,9\n";
const KAGGLE_TEST: &str = "pixel0,pixel1,pixel2,pixel3\n0,255,12,0\n0,0,0,9\n";
const SERIES: &str = "month,passengers\n1949-01,112\n1949-02,118\n1949-03,132\n1949-04,129\n";
const TEXTS: &str = "text,label\n\"free money, click now\",spam\nlunch at noon?,ham\n";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn idx_files(bytes in inputs(idx_file())) {
        let dir = scratch("idx");
        let _ = read_idx(write(&dir, "f.idx", &bytes));
    }

    #[test]
    fn cifar_binary_batches(bytes in inputs([vec![3u8], vec![7u8; 3072]].concat())) {
        let dir = scratch("cifar");
        for i in 1..=5 {
            write(&dir, &format!("data_batch_{i}.bin"), &bytes);
        }
        write(&dir, "test_batch.bin", &bytes);
        let _ = cifar10(Some(&dir), true);
        let _ = cifar10(Some(&dir), false);
    }

    #[test]
    fn csv_tables(bytes in inputs(TABLE.as_bytes().to_vec())) {
        let dir = scratch("csv");
        let path = write(&dir, "t.csv", &bytes);
        let _ = load_csv(&path, &CsvOptions::new("label"));
        let _ = load_features_csv(&path);
    }

    #[test]
    fn kaggle_csvs(train in inputs(KAGGLE_TRAIN.as_bytes().to_vec()),
                   test in inputs(KAGGLE_TEST.as_bytes().to_vec())) {
        let dir = scratch("kaggle");
        let _ = digit_recognizer_train(&write(&dir, "train.csv", &train));
        let _ = digit_recognizer_test(&write(&dir, "test.csv", &test));
    }

    #[test]
    fn series_csvs(bytes in inputs(SERIES.as_bytes().to_vec())) {
        let dir = scratch("series");
        let _ = load_series_csv(&write(&dir, "s.csv", &bytes), "passengers");
    }

    #[test]
    fn text_csvs(bytes in inputs(TEXTS.as_bytes().to_vec())) {
        let dir = scratch("text");
        let path = write(&dir, "x.csv", &bytes);
        let _ = load_text_csv(&path, "text", "label");
        let _ = load_texts_csv(&path, "text");
    }
}

#[test]
fn an_idx_header_claiming_four_billion_items_is_an_error_not_an_allocation() {
    let dir = scratch("idx-huge");
    // 3 dimensions of 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF in a 100-byte file.
    let mut bytes = vec![0, 0, 8, 3];
    bytes.extend([0xFF; 12]);
    bytes.resize(100, 0);
    let err = read_idx(write(&dir, "huge.idx", &bytes)).unwrap_err();
    assert!(err.to_string().contains("huge.idx"), "{err}");
    let mut one = vec![0, 0, 8, 1, 0xFF, 0xFF, 0xFF, 0xFF];
    one.resize(100, 0);
    let err = read_idx(write(&dir, "long.idx", &one)).unwrap_err();
    assert!(err.to_string().contains("long.idx"), "{err}");
}
