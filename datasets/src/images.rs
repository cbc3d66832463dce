//! Your own images, read from files (Keras's `image_dataset_from_directory`, torchvision's
//! `ImageFolder`): a folder with one sub-folder per class, or a CSV of `path,label` rows.
//!
//! The samples are not held in memory: a [`Data`] of images read from files keeps their paths
//! ([`ImageFiles`]) and decodes each one when a batch needs it ([`Data::read_samples`]), so a
//! folder larger than memory trains. Every file's header is read up front, so that a file that
//! is not an image, an image of another size and an empty class are errors naming the file
//! before training starts; a file whose pixels turn out corrupt is an error naming it when it is
//! read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::{ColorType, ImageDecoder, ImageReader, imageops::FilterType};

use crate::{Data, DataError, DecodedCache, Targets};

/// The file name extensions read as images (any case); other files in a class folder are
/// skipped and counted ([`ImageSet::skipped`]).
pub const IMAGE_EXTENSIONS: [&str; 10] = [
    "png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff", "pnm", "tga",
];

/// How images become samples. The defaults keep every image as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImageOptions {
    /// Resize every image to `[height, width]` (bilinear). Default: none; then every image must
    /// have the size of the first.
    pub size: Option<[usize; 2]>,
    /// 1 (grey) or 3 (RGB): every image is converted to it, an alpha channel dropped.
    /// Default: 1 if every image is grey, else 3.
    pub channels: Option<usize>,
    /// Keep decoded images in memory, at most this many bytes of them (4 per pixel value):
    /// epochs after the first read those from memory. Default: none, every read decodes.
    pub cache_bytes: Option<usize>,
}

/// The image files of a [`Data`], decoded to `[channels, height, width]` samples with pixels in
/// [0, 1] (then normalised per channel, if [`ImageFiles::normalize`] is set) when read.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFiles {
    /// The files, one per sample.
    pub paths: Vec<PathBuf>,
    /// `[channels, height, width]` of every sample.
    pub shape: [usize; 3],
    /// Per-channel `(mean, std)` subtracted and divided after decoding.
    pub normalize: Option<(Vec<f32>, Vec<f32>)>,
    /// Decoded images kept in memory up to a size cap ([`ImageOptions::cache_bytes`]); `None`
    /// decodes every file each time it is read.
    pub cache: Option<Arc<DecodedCache>>,
}

impl ImageFiles {
    /// Decodes image `i` into `out` (`channels * height * width` values, channel-major).
    pub fn read(&self, i: usize, out: &mut [f32]) -> Result<(), DataError> {
        match self.cache.as_ref().and_then(|cache| cache.get(i)) {
            Some(pixels) => out.copy_from_slice(pixels),
            None => {
                self.decode(i, out)?;
                if let Some(cache) = &self.cache {
                    cache.put(i, out);
                }
            }
        }
        let [_, h, w] = self.shape;
        if let Some((mean, std)) = &self.normalize {
            for (ch, plane) in out.chunks_exact_mut(h * w).enumerate() {
                plane
                    .iter_mut()
                    .for_each(|v| *v = (*v - mean[ch]) / std[ch]);
            }
        }
        Ok(())
    }

    /// Decodes image `i`'s file into `out`, pixels in [0, 1].
    fn decode(&self, i: usize, out: &mut [f32]) -> Result<(), DataError> {
        let path = &self.paths[i];
        let [c, h, w] = self.shape;
        let image = reader(path)?.decode().map_err(|e| image_error(path, e))?;
        let image = if (image.height() as usize, image.width() as usize) != (h, w) {
            image.resize_exact(w as u32, h as u32, FilterType::Triangle)
        } else {
            image
        };
        let pixels: Vec<u8> = match c {
            1 => image.into_luma8().into_raw(),
            _ => image.into_rgb8().into_raw(),
        };
        for (p, chunk) in pixels.chunks_exact(c).enumerate() {
            for (ch, &v) in chunk.iter().enumerate() {
                out[ch * h * w + p] = v as f32 / 255.0;
            }
        }
        Ok(())
    }

    /// The files at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> ImageFiles {
        ImageFiles {
            paths: indices.iter().map(|&i| self.paths[i].clone()).collect(),
            shape: self.shape,
            normalize: self.normalize.clone(),
            cache: self
                .cache
                .as_ref()
                .map(|cache| Arc::new(cache.sibling(indices.len()))),
        }
    }
}

/// A labelled set of image files and what reading their headers found.
#[derive(Debug)]
pub struct ImageSet {
    /// The samples (read from their files) and their classes.
    pub data: Data,
    /// Files of a class folder that were not images by their extension, skipped.
    pub skipped: Vec<PathBuf>,
}

/// One sub-folder of `dir` per class (the classes are the sorted folder names), every image
/// file in it one sample of that class. Errors name the file or folder at fault: not a folder,
/// fewer than two classes, an empty class, a file that is not an image it claims to be, sizes
/// that differ without [`ImageOptions::size`].
pub fn image_folder(dir: &Path, options: &ImageOptions) -> Result<ImageSet, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut classes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| DataError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        if entry.path().is_dir() {
            classes.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    classes.sort();
    if classes.len() < 2 {
        return Err(DataError::Images {
            path: dir.to_path_buf(),
            reason: format!(
                "{} class folder{} found; a classifier needs one sub-folder per class, at \
                 least two",
                classes.len(),
                if classes.len() == 1 { "" } else { "s" }
            ),
        });
    }
    let (mut paths, mut labels, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for (label, class) in classes.iter().enumerate() {
        let folder = dir.join(class);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
            .map_err(|source| DataError::Io {
                path: folder.clone(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        let before = paths.len();
        for file in files {
            if is_image_name(&file) {
                paths.push(file);
                labels.push(label);
            } else {
                skipped.push(file);
            }
        }
        if paths.len() == before {
            return Err(DataError::Images {
                path: folder,
                reason: format!(
                    "class `{class}` has no image file (extensions read: {})",
                    IMAGE_EXTENSIONS.join(", ")
                ),
            });
        }
    }
    let files = check_files(paths, options)?;
    let data = Data::from_files(
        files,
        Targets::Classes {
            labels,
            names: classes,
        },
    )?;
    Ok(ImageSet { data, skipped })
}

/// A CSV with a header and the columns `path` and `label`: each row an image file (relative
/// paths from the CSV's folder) and its class name; the classes are the sorted names.
pub fn image_list(csv_path: &Path, options: &ImageOptions) -> Result<ImageSet, DataError> {
    let mut reader = csv::Reader::from_path(csv_path).map_err(|e| csv_error(csv_path, e))?;
    let header = reader
        .headers()
        .map_err(|e| csv_error(csv_path, e))?
        .clone();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| DataError::MissingColumn {
                path: csv_path.to_path_buf(),
                column: name.into(),
                available: header.iter().collect::<Vec<_>>().join(", "),
            })
    };
    let (path_col, label_col) = (column("path")?, column("label")?);
    let base = csv_path.parent().unwrap_or(Path::new("."));
    let mut rows = Vec::new();
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| csv_error(csv_path, e))?;
        let (Some(file), Some(label)) = (record.get(path_col), record.get(label_col)) else {
            return Err(DataError::Ragged {
                path: csv_path.to_path_buf(),
                row: row + 1,
                expected: header.len(),
                got: record.len(),
            });
        };
        rows.push((base.join(file.trim()), label.trim().to_string()));
    }
    let mut names: Vec<String> = rows.iter().map(|(_, l)| l.clone()).collect();
    names.sort();
    names.dedup();
    if names.len() < 2 {
        return Err(DataError::Images {
            path: csv_path.to_path_buf(),
            reason: format!(
                "{} class{} in the label column; a classifier needs at least two",
                names.len(),
                if names.len() == 1 { "" } else { "es" }
            ),
        });
    }
    let labels = rows
        .iter()
        .map(|(_, l)| names.binary_search(l).expect("every label is a name"))
        .collect();
    let files = check_files(rows.into_iter().map(|(p, _)| p).collect(), options)?;
    let data = Data::from_files(files, Targets::Classes { labels, names })?;
    Ok(ImageSet {
        data,
        skipped: Vec::new(),
    })
}

/// Unlabelled image files of `shape` (`[channels, height, width]`, resized as needed), for
/// prediction: `path` itself, or every image file in the folder `path` (sorted); each one
/// decoded once to check it reads.
pub fn image_inputs(path: &Path, shape: [usize; 3]) -> Result<Data, DataError> {
    let paths = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|source| DataError::Io {
                path: path.to_path_buf(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_image_name(p))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(DataError::Images {
                path: path.to_path_buf(),
                reason: format!(
                    "no image file in this folder (extensions read: {})",
                    IMAGE_EXTENSIONS.join(", ")
                ),
            });
        }
        files
    } else {
        vec![path.to_path_buf()]
    };
    let options = ImageOptions {
        size: Some([shape[1], shape[2]]),
        channels: Some(shape[0]),
        cache_bytes: None,
    };
    let files = check_files(paths, &options)?;
    let n = files.paths.len();
    let data = Data::from_files(files, Targets::Unlabelled { n })?;
    data.check_readable()?;
    Ok(data)
}

fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Reads every file's header (size, colour type) and settles the samples' shape.
fn check_files(paths: Vec<PathBuf>, options: &ImageOptions) -> Result<ImageFiles, DataError> {
    if let Some(c) = options.channels
        && c != 1
        && c != 3
    {
        return Err(DataError::Images {
            path: PathBuf::new(),
            reason: format!("channels must be 1 (grey) or 3 (RGB), got {c}"),
        });
    }
    if let Some([h, w]) = options.size
        && (h == 0 || w == 0)
    {
        return Err(DataError::Images {
            path: PathBuf::new(),
            reason: format!("the image size must be at least 1x1, got {h}x{w}"),
        });
    }
    let mut first: Option<(usize, usize)> = None;
    let mut colour = false;
    for path in &paths {
        let (size, is_colour) = header(path)?;
        colour |= is_colour;
        match first {
            None => first = Some(size),
            Some(f) if f != size && options.size.is_none() => {
                return Err(DataError::Images {
                    path: path.clone(),
                    reason: format!(
                        "{}x{} where the first image, {}, is {}x{}; give an image size \
                         (--image-size HxW) to resize every image",
                        size.0,
                        size.1,
                        paths[0].display(),
                        f.0,
                        f.1
                    ),
                });
            }
            Some(_) => {}
        }
    }
    let (h, w) = match (options.size, first) {
        (Some([h, w]), _) => (h, w),
        (None, Some(size)) => size,
        (None, None) => {
            return Err(DataError::Empty("image files".into()));
        }
    };
    let channels = options.channels.unwrap_or(if colour { 3 } else { 1 });
    Ok(ImageFiles {
        cache: options
            .cache_bytes
            .map(|bytes| Arc::new(DecodedCache::new(paths.len(), bytes))),
        paths,
        shape: [channels, h, w],
        normalize: None,
    })
}

/// The `(height, width)` of the image in `path` and whether it has colour, from its header.
fn header(path: &Path) -> Result<((usize, usize), bool), DataError> {
    let decoder = reader(path)?
        .into_decoder()
        .map_err(|e| image_error(path, e))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(DataError::Images {
            path: path.to_path_buf(),
            reason: format!("an empty image ({w}x{h})"),
        });
    }
    let grey = matches!(
        decoder.color_type(),
        ColorType::L8 | ColorType::La8 | ColorType::L16 | ColorType::La16
    );
    Ok(((h as usize, w as usize), !grey))
}

/// A reader of the image in `path`, its format guessed from its first bytes (not its name).
fn reader(path: &Path) -> Result<ImageReader<std::io::BufReader<std::fs::File>>, DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    ImageReader::open(path)
        .map_err(io)?
        .with_guessed_format()
        .map_err(io)
}

fn image_error(path: &Path, e: image::ImageError) -> DataError {
    DataError::Images {
        path: path.to_path_buf(),
        reason: format!("not a readable image: {e}"),
    }
}

fn csv_error(path: &Path, e: csv::Error) -> DataError {
    DataError::Csv {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Writes a grey PNG (tests).
#[cfg(test)]
pub(crate) fn grey_png(path: &Path, pixels: &[u8], width: u32, height: u32) {
    image::DynamicImage::ImageLuma8(
        image::GrayImage::from_raw(width, height, pixels.to_vec()).expect("pixels fit"),
    )
    .save(path)
    .expect("writing a test image");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kiln-images-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// With a cache for 3 of 4 images, a second pass reads those from memory: with the files
    /// gone, they still read (the same values, normalised at read time), the fourth does not.
    #[test]
    fn cached_images_are_read_from_memory_up_to_the_cap() {
        let dir = scratch("cache");
        for (class, value) in [("a", 10u8), ("b", 200u8)] {
            std::fs::create_dir_all(dir.join(class)).unwrap();
            for i in 0..2u8 {
                let path = dir.join(class).join(format!("{i}.png"));
                grey_png(&path, &[value + i, 51, 102, 153], 2, 2);
            }
        }
        // 3 images of 4 values of 4 bytes.
        let options = ImageOptions {
            cache_bytes: Some(48),
            ..Default::default()
        };
        let set = image_folder(&dir, &options).unwrap();
        let all = [0, 1, 2, 3];
        let (mut first, mut again) = (Vec::new(), Vec::new());
        set.data.read_samples(&all, &mut first).unwrap();
        let cache = set.data.files.as_ref().unwrap().cache.clone().unwrap();
        assert_eq!((cache.cached(), cache.used_bytes()), (3, 48));
        std::fs::remove_dir_all(&dir).unwrap();
        let cached: Vec<usize> = (0..4).filter(|&i| cache.get(i).is_some()).collect();
        set.data.read_samples(&cached, &mut again).unwrap();
        let expected: Vec<f32> = cached
            .iter()
            .flat_map(|&i| first[i * 4..(i + 1) * 4].to_vec())
            .collect();
        assert_eq!(again, expected);
        let missing = (0..4).find(|i| !cached.contains(i)).unwrap();
        let err = set.data.read_samples(&[missing], &mut again).unwrap_err();
        assert!(err.to_string().contains(".png"), "{err}");
        // A normaliser set later applies to cached pixels as to decoded ones.
        let mut normalised = set.data.clone();
        if let Some(files) = normalised.files.as_mut() {
            Arc::make_mut(files).normalize = Some((vec![0.5], vec![2.0]));
        }
        normalised.read_samples(&cached[..1], &mut again).unwrap();
        let i = cached[0];
        let want: Vec<f32> = first[i * 4..(i + 1) * 4]
            .iter()
            .map(|v| (v - 0.5) / 2.0)
            .collect();
        assert_eq!(again, want);
    }

    #[test]
    fn a_folder_of_class_folders_reads_its_images_channel_major_in_0_1() {
        let dir = scratch("folder");
        for (class, value) in [("cat", 0u8), ("dog", 255u8)] {
            std::fs::create_dir_all(dir.join(class)).unwrap();
            grey_png(&dir.join(class).join("a.png"), &[value, 51, 102, 153], 2, 2);
        }
        std::fs::write(dir.join("cat").join("notes.txt"), "not an image").unwrap();
        let set = image_folder(&dir, &ImageOptions::default()).unwrap();
        assert_eq!(set.skipped, [dir.join("cat").join("notes.txt")]);
        assert_eq!(set.data.sample_shape, [1, 2, 2]);
        assert_eq!(set.data.y.labels().unwrap(), &[0, 1]);
        let mut x = Vec::new();
        set.data.read_samples(&[1, 0], &mut x).unwrap();
        let expected = [1.0, 0.2, 0.4, 0.6, 0.0, 0.2, 0.4, 0.6];
        assert!(
            x.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-6),
            "{x:?}"
        );
        // As RGB, each grey value three times; resized, one value per pixel of the new size.
        let rgb = ImageOptions {
            channels: Some(3),
            size: Some([1, 1]),
            ..Default::default()
        };
        let set = image_folder(&dir, &rgb).unwrap();
        assert_eq!(set.data.sample_shape, [3, 1, 1]);
        set.data.read_samples(&[1], &mut x).unwrap();
        assert_eq!(x.len(), 3);
        assert!(x[0] == x[1] && x[1] == x[2]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_folders_and_files_are_named() {
        let dir = scratch("bad");
        std::fs::create_dir_all(dir.join("only")).unwrap();
        grey_png(&dir.join("only").join("a.png"), &[0; 4], 2, 2);
        let err = image_folder(&dir, &ImageOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 class folder found"), "{err}");

        std::fs::create_dir_all(dir.join("empty")).unwrap();
        let err = image_folder(&dir, &ImageOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("class `empty` has no image file"), "{err}");

        grey_png(&dir.join("empty").join("big.png"), &[0; 9], 3, 3);
        let err = image_folder(&dir, &ImageOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("big.png")
                && err.contains("where the first image")
                && err.contains("--image-size"),
            "{err}"
        );

        std::fs::write(
            dir.join("empty").join("big.png"),
            b"\x89PNG\r\n\x1a\nnot really",
        )
        .unwrap();
        let err = image_folder(&dir, &ImageOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("big.png: not a readable image"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn truncated_pixels_are_an_error_naming_the_file_when_read() {
        let dir = scratch("truncated");
        for class in ["a", "b"] {
            std::fs::create_dir_all(dir.join(class)).unwrap();
            let pixels: Vec<u8> = (0..=255).collect();
            grey_png(&dir.join(class).join("x.png"), &pixels, 16, 16);
        }
        let file = dir.join("b").join("x.png");
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() - 20]).unwrap();
        let set = image_folder(&dir, &ImageOptions::default()).unwrap();
        let mut x = Vec::new();
        let err = set
            .data
            .read_samples(&[0, 1], &mut x)
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.png") && err.contains("b/"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any bytes in a file named like an image, and any cut of a real PNG: an error naming
        /// the file or an image, never a panic.
        #[test]
        fn any_bytes_are_an_image_or_an_error_naming_the_file(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            cut in 0usize..200,
            ext in proptest::sample::select(vec!["png", "jpg", "gif", "bmp", "webp", "tiff"]),
        ) {
            let dir = std::env::temp_dir().join(format!("kiln-images-fuzz-{}", std::process::id()));
            std::fs::create_dir_all(dir.join("a")).unwrap();
            std::fs::create_dir_all(dir.join("b")).unwrap();
            let pixels: Vec<u8> = (0..=255).collect();
            grey_png(&dir.join("a").join("good.png"), &pixels, 16, 16);
            let good = std::fs::read(dir.join("a").join("good.png")).unwrap();
            let cut_png = &good[..cut.min(good.len())];
            for (name, content) in [(format!("x.{ext}"), &bytes[..]), ("cut.png".into(), cut_png)] {
                let file = dir.join("b").join(&name);
                let _ = std::fs::remove_dir_all(dir.join("b"));
                std::fs::create_dir_all(dir.join("b")).unwrap();
                std::fs::write(&file, content).unwrap();
                let options = ImageOptions { size: Some([16, 16]), ..Default::default() };
                match image_folder(&dir, &options) {
                    Err(e) => proptest::prop_assert!(e.to_string().contains(&name), "{e}"),
                    Ok(set) => {
                        let mut x = Vec::new();
                        if let Err(e) = set.data.read_samples(&[0, 1], &mut x) {
                            proptest::prop_assert!(e.to_string().contains(&name), "{e}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_csv_of_paths_and_labels_reads_the_same_images() {
        let dir = scratch("csv");
        grey_png(&dir.join("one.png"), &[10, 20, 30, 40], 2, 2);
        grey_png(&dir.join("two.png"), &[50, 60, 70, 80], 2, 2);
        std::fs::write(dir.join("list.csv"), "path,label\ntwo.png,b\none.png,a\n").unwrap();
        let set = image_list(&dir.join("list.csv"), &ImageOptions::default()).unwrap();
        assert_eq!(set.data.y.labels().unwrap(), &[1, 0]);
        let mut x = Vec::new();
        set.data.read_samples(&[1], &mut x).unwrap();
        assert!((x[0] - 10.0 / 255.0).abs() < 1e-6);
        std::fs::write(dir.join("bad.csv"), "file,label\none.png,a\n").unwrap();
        let err = image_list(&dir.join("bad.csv"), &ImageOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no column named `path`"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
