use std::path::{Path, PathBuf};

use crate::{Data, DataError, Targets, read_idx};

/// Which part of MNIST to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MnistSplit {
    /// The 60,000 training images.
    Train,
    /// The 10,000 test images.
    Test,
}

/// The directory that holds fetched datasets: `$KILN_DATA`, else `kiln/` under the user's cache
/// directory (`~/.cache/kiln` on Linux).
pub fn data_dir() -> PathBuf {
    std::env::var_os("KILN_DATA")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("kiln")))
        .unwrap_or_else(|| PathBuf::from(".kiln-data"))
}

/// The sentence a missing-data error carries: the command that fetches `dataset`.
pub fn fetch_hint(dataset: &str) -> String {
    format!(
        "Fetch it with `datasets/fetch.sh {dataset}` (from the kiln repository; it fills {} — set \
         KILN_DATA to use another directory).",
        data_dir().display()
    )
}

/// Loads MNIST from `dir` (default: the `mnist/` folder under [`data_dir`]):
/// images as `[1, 28, 28]` samples scaled to `[0, 1]`,
/// labels 0-9. Reads the IDX files plain or gzip-compressed (`*-ubyte` or `*-ubyte.gz`).
pub fn mnist(dir: Option<&Path>, split: MnistSplit) -> Result<Data, DataError> {
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| data_dir().join("mnist"));
    let prefix = match split {
        MnistSplit::Train => "train",
        MnistSplit::Test => "t10k",
    };
    let images = find(&dir, &format!("{prefix}-images-idx3-ubyte"), "mnist")?;
    let labels = find(&dir, &format!("{prefix}-labels-idx1-ubyte"), "mnist")?;
    images_and_labels(&images, &labels, (0..10).map(|d| d.to_string()).collect())
}

/// The ten Fashion-MNIST classes, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
];

/// Loads Fashion-MNIST (same IDX format and shapes as MNIST) from `dir`, default the
/// `fashion-mnist/` folder under [`data_dir`], falling back to the Debian package's
/// `/usr/share/datasets/fashion-mnist` when that holds the files.
pub fn fashion_mnist(dir: Option<&Path>, split: MnistSplit) -> Result<Data, DataError> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => {
            let cache = data_dir().join("fashion-mnist");
            let system = PathBuf::from("/usr/share/datasets/fashion-mnist");
            if !cache.exists() && system.exists() {
                system
            } else {
                cache
            }
        }
    };
    let prefix = match split {
        MnistSplit::Train => "train",
        MnistSplit::Test => "t10k",
    };
    let images = find(
        &dir,
        &format!("{prefix}-images-idx3-ubyte"),
        "fashion-mnist",
    )?;
    let labels = find(
        &dir,
        &format!("{prefix}-labels-idx1-ubyte"),
        "fashion-mnist",
    )?;
    let names = FASHION_MNIST_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    images_and_labels(&images, &labels, names)
}

/// Finds `name` or `name.gz` in `dir`, or says how to fetch `dataset`.
pub(crate) fn find(dir: &Path, name: &str, dataset: &str) -> Result<PathBuf, DataError> {
    let plain = dir.join(name);
    if plain.exists() {
        return Ok(plain);
    }
    let gz = dir.join(format!("{name}.gz"));
    if gz.exists() {
        return Ok(gz);
    }
    Err(DataError::MissingFile {
        path: plain,
        hint: fetch_hint(dataset),
    })
}

/// Pairs an IDX image file `[n, h, w]` with an IDX label file `[n]`.
pub(crate) fn images_and_labels(
    images: &Path,
    labels: &Path,
    class_names: Vec<String>,
) -> Result<Data, DataError> {
    let img = read_idx(images)?;
    let lab = read_idx(labels)?;
    if img.dims.len() != 3 || lab.dims.len() != 1 || img.dims[0] != lab.dims[0] {
        return Err(DataError::ShapeMismatch {
            what: format!("{} and {}", images.display(), labels.display()),
            expected: "images [n, height, width] and labels [n]".into(),
            got: format!("images {:?} and labels {:?}", img.dims, lab.dims),
        });
    }
    if let Some(bad) = lab.data.iter().find(|&&l| l as usize >= class_names.len()) {
        return Err(DataError::ShapeMismatch {
            what: labels.display().to_string(),
            expected: format!("labels below {}", class_names.len()),
            got: bad.to_string(),
        });
    }
    let x = img.data.iter().map(|&p| p as f32 / 255.0).collect();
    let y = Targets::Classes {
        labels: lab.data.iter().map(|&l| l as usize).collect(),
        names: class_names,
    };
    Data::new(x, vec![1, img.dims[1], img.dims[2]], y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_idx(path: &Path, dims: &[u32], data: &[u8]) {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        dims.iter()
            .for_each(|d| b.extend_from_slice(&d.to_be_bytes()));
        b.extend_from_slice(data);
        std::fs::write(path, b).unwrap();
    }

    #[test]
    fn missing_files_name_the_fetch_command() {
        let e = mnist(Some(Path::new("/nonexistent")), MnistSplit::Train).unwrap_err();
        assert!(e.to_string().contains("datasets/fetch.sh mnist"), "{e}");
    }

    #[test]
    fn reads_images_scaled_and_labels() {
        let dir = std::env::temp_dir().join(format!("kiln-mnist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_idx(
            &dir.join("t10k-images-idx3-ubyte"),
            &[2, 2, 2],
            &[0, 255, 51, 0, 1, 2, 3, 4],
        );
        write_idx(&dir.join("t10k-labels-idx1-ubyte"), &[2], &[7, 3]);
        let d = mnist(Some(&dir), MnistSplit::Test).unwrap();
        assert_eq!(d.sample_shape, vec![1, 2, 2]);
        assert_eq!(&d.x[..3], &[0.0, 1.0, 0.2]);
        assert_eq!(d.y.labels().unwrap(), &[7, 3]);

        write_idx(&dir.join("t10k-labels-idx1-ubyte"), &[3], &[7, 3, 1]);
        let e = mnist(Some(&dir), MnistSplit::Test).unwrap_err().to_string();
        assert!(e.contains("labels [3]"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
