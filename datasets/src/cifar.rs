use std::path::{Path, PathBuf};

use crate::{Data, DataError, Targets, data_dir};

/// The ten CIFAR-10 classes, in label order.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

const RECORD: usize = 1 + 3 * 32 * 32;

/// Where CIFAR-10 can be had: no package registry ships it.
pub fn cifar10_hint(dir: &Path) -> String {
    format!(
        "CIFAR-10 is not in any package registry: download the binary version \
         (cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html), unpack it, \
         and put data_batch_1.bin ... data_batch_5.bin and test_batch.bin in {}",
        dir.display()
    )
}

/// Loads CIFAR-10 from its binary format (`data_batch_1..5.bin` for training, `test_batch.bin`
/// for testing; each record one label byte then 3072 pixel bytes, the red, green and blue planes
/// of a 32x32 image). `dir` defaults to `cifar10/` under [`data_dir`]. Images come as
/// `[3, 32, 32]` samples scaled to `[0, 1]`.
pub fn cifar10(dir: Option<&Path>, train: bool) -> Result<Data, DataError> {
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| data_dir().join("cifar10"));
    let files: Vec<PathBuf> = if train {
        (1..=5)
            .map(|i| dir.join(format!("data_batch_{i}.bin")))
            .collect()
    } else {
        vec![dir.join("test_batch.bin")]
    };
    let (mut x, mut labels) = (Vec::new(), Vec::new());
    for file in files {
        if !file.exists() {
            return Err(DataError::MissingFile {
                hint: cifar10_hint(&dir),
                path: file,
            });
        }
        let bytes = std::fs::read(&file).map_err(|e| DataError::io(&file, e))?;
        if bytes.is_empty() || bytes.len() % RECORD != 0 {
            return Err(DataError::ShapeMismatch {
                what: file.display().to_string(),
                expected: format!("a whole number of {RECORD}-byte records"),
                got: format!("{} bytes", bytes.len()),
            });
        }
        for (i, record) in bytes.chunks_exact(RECORD).enumerate() {
            let label = record[0] as usize;
            if label >= 10 {
                return Err(DataError::ShapeMismatch {
                    what: format!("{}, record {i}", file.display()),
                    expected: "a label below 10".into(),
                    got: label.to_string(),
                });
            }
            labels.push(label);
            x.extend(record[1..].iter().map(|&p| p as f32 / 255.0));
        }
    }
    let names = CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect();
    Data::new(x, vec![3, 32, 32], Targets::Classes { labels, names })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `n` records in CIFAR-10's exact binary format: label `i % 10`, then the red plane
    /// filled with `i`, green with 100, blue with 255.
    fn write_batch(path: &Path, n: usize) {
        let mut bytes = Vec::with_capacity(n * RECORD);
        for i in 0..n {
            bytes.push((i % 10) as u8);
            bytes.extend(std::iter::repeat_n(i as u8, 1024));
            bytes.extend(std::iter::repeat_n(100u8, 1024));
            bytes.extend(std::iter::repeat_n(255u8, 1024));
        }
        std::fs::write(path, bytes).unwrap();
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kiln-cifar-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn reads_the_binary_format_channel_planes_first() {
        let d = dir("ok");
        for i in 1..=5 {
            write_batch(&d.join(format!("data_batch_{i}.bin")), 3);
        }
        write_batch(&d.join("test_batch.bin"), 4);
        let train = cifar10(Some(&d), true).unwrap();
        assert_eq!(train.len(), 15);
        assert_eq!(train.sample_shape, vec![3, 32, 32]);
        let test = cifar10(Some(&d), false).unwrap();
        assert_eq!(test.y.labels().unwrap(), &[0, 1, 2, 3]);
        let s = test.sample(2);
        assert_eq!((s[0], s[1024], s[2048]), (2.0 / 255.0, 100.0 / 255.0, 1.0));
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn missing_files_say_where_to_download_and_bad_sizes_are_errors() {
        let d = dir("bad");
        let e = cifar10(Some(&d), false).unwrap_err().to_string();
        assert!(
            e.contains("cifar-10-binary.tar.gz") && e.contains("test_batch.bin"),
            "{e}"
        );
        std::fs::write(d.join("test_batch.bin"), vec![0u8; RECORD + 5]).unwrap();
        let e = cifar10(Some(&d), false).unwrap_err().to_string();
        assert!(e.contains("3078 bytes"), "{e}");
        std::fs::remove_dir_all(d).unwrap();
    }
}
