use std::sync::Arc;

use crate::{DataError, ImageFiles};

/// A labelled dataset.
///
/// Samples are stored row-major in one flat buffer: sample `i` is
/// `x[i * sample_len .. (i + 1) * sample_len]`, with `sample_len` the product of
/// `sample_shape` (`[64]` for a table row, `[1, 28, 28]` for a grey image).
///
/// Images read from files ([`crate::image_folder`]) are not held in memory: `x` is empty and
/// [`Data::files`] decodes each sample when [`Data::read_samples`] asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Data {
    /// Every sample's features, one after the other (empty when they are read from files).
    pub x: Vec<f32>,
    /// The shape of one sample.
    pub sample_shape: Vec<usize>,
    /// What the model learns to predict.
    pub y: Targets,
    /// The files the samples are read from, one per sample, when they are not in `x`.
    pub files: Option<Arc<ImageFiles>>,
}

/// The targets of a [`Data`].
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// One class index per sample, with the name of each class.
    Classes {
        /// Class index of each sample.
        labels: Vec<usize>,
        /// Name of each class.
        names: Vec<String>,
    },
    /// `names.len()` real values per sample, row-major (regression).
    Values {
        /// `names.len()` values per sample, row-major.
        values: Vec<f32>,
        /// Name of each target column.
        names: Vec<String>,
    },
    /// No targets: inputs to predict on (such as a Kaggle `test.csv`).
    Unlabelled {
        /// The number of samples.
        n: usize,
    },
}

impl Targets {
    /// Number of samples these targets describe.
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes { labels, .. } => labels.len(),
            Targets::Values { values, names } => values.len() / names.len().max(1),
            Targets::Unlabelled { n } => *n,
        }
    }

    /// Whether there are no targets at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The class labels, if these are classes.
    pub fn labels(&self) -> Option<&[usize]> {
        match self {
            Targets::Classes { labels, .. } => Some(labels),
            Targets::Values { .. } | Targets::Unlabelled { .. } => None,
        }
    }

    /// Number of classes (classification) or of target columns (regression).
    pub fn width(&self) -> usize {
        match self {
            Targets::Classes { names, .. } | Targets::Values { names, .. } => names.len(),
            Targets::Unlabelled { .. } => 0,
        }
    }

    fn subset(&self, indices: &[usize]) -> Targets {
        match self {
            Targets::Classes { labels, names } => Targets::Classes {
                labels: indices.iter().map(|&i| labels[i]).collect(),
                names: names.clone(),
            },
            Targets::Values { values, names } => {
                let w = names.len();
                let mut out = Vec::with_capacity(indices.len() * w);
                for &i in indices {
                    out.extend_from_slice(&values[i * w..(i + 1) * w]);
                }
                Targets::Values {
                    values: out,
                    names: names.clone(),
                }
            }
            Targets::Unlabelled { .. } => Targets::Unlabelled { n: indices.len() },
        }
    }
}

impl Data {
    /// Builds a dataset, checking that the buffer, the sample shape and the targets agree.
    pub fn new(x: Vec<f32>, sample_shape: Vec<usize>, y: Targets) -> Result<Self, DataError> {
        let sample_len: usize = sample_shape.iter().product();
        if sample_len == 0 || !x.len().is_multiple_of(sample_len) || x.len() / sample_len != y.len()
        {
            return Err(DataError::ShapeMismatch {
                what: "samples and targets".into(),
                expected: format!(
                    "{} values ({} samples of shape {:?})",
                    y.len() * sample_len,
                    y.len(),
                    sample_shape
                ),
                got: format!("{} values", x.len()),
            });
        }
        if let Targets::Classes { labels, names } = &y
            && let Some(bad) = labels.iter().find(|&&l| l >= names.len())
        {
            return Err(DataError::ShapeMismatch {
                what: "class label".into(),
                expected: format!("a label below {}", names.len()),
                got: bad.to_string(),
            });
        }
        Ok(Self {
            x,
            sample_shape,
            y,
            files: None,
        })
    }

    /// Samples read from `files` when needed, with targets `y` (one per file).
    pub fn from_files(files: ImageFiles, y: Targets) -> Result<Self, DataError> {
        if y.len() != files.paths.len() {
            return Err(DataError::ShapeMismatch {
                what: "image files and targets".into(),
                expected: format!("{} targets", files.paths.len()),
                got: y.len().to_string(),
            });
        }
        Ok(Self {
            x: Vec::new(),
            sample_shape: files.shape.to_vec(),
            y,
            files: Some(Arc::new(files)),
        })
    }

    /// Whether the samples are read from files rather than held in `x`.
    pub fn is_streamed(&self) -> bool {
        self.files.is_some()
    }

    /// The samples at `indices`, one after the other, into `out` (replacing what it held):
    /// copied from memory, or decoded from their files in parallel.
    pub fn read_samples(&self, indices: &[usize], out: &mut Vec<f32>) -> Result<(), DataError> {
        let n = self.sample_len();
        out.clear();
        match &self.files {
            None => {
                out.reserve(indices.len() * n);
                for &i in indices {
                    out.extend_from_slice(self.sample(i));
                }
                Ok(())
            }
            Some(files) => {
                use rayon::prelude::*;
                out.resize(indices.len() * n, 0.0);
                out.par_chunks_mut(n.max(1))
                    .zip(indices.par_iter())
                    .try_for_each(|(sample, &i)| files.read(i, sample))
            }
        }
    }

    /// Decodes every sample read from files once, keeping none: a file whose pixels are corrupt
    /// is an error naming it now rather than when a batch needs it (a test set read only at
    /// the end of a run, inputs to predict on). Samples in memory are always readable.
    pub fn check_readable(&self) -> Result<(), DataError> {
        if self.files.is_none() {
            return Ok(());
        }
        let all: Vec<usize> = (0..self.len()).collect();
        let mut chunk = Vec::new();
        for indices in all.chunks(256) {
            self.read_samples(indices, &mut chunk)?;
        }
        Ok(())
    }

    /// The same samples held in memory (decoded, when read from files): for a small part, such
    /// as the few samples a statistic or a check reads.
    pub fn in_memory(&self) -> Result<Data, DataError> {
        match &self.files {
            None => Ok(self.clone()),
            Some(_) => {
                let all: Vec<usize> = (0..self.len()).collect();
                let mut x = Vec::new();
                self.read_samples(&all, &mut x)?;
                Data::new(x, self.sample_shape.clone(), self.y.clone())
            }
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of values in one sample.
    pub fn sample_len(&self) -> usize {
        self.sample_shape.iter().product()
    }

    /// Features of sample `i`, held in memory ([`Data::read_samples`] reads any sample).
    ///
    /// # Panics
    /// When the samples are read from files.
    pub fn sample(&self, i: usize) -> &[f32] {
        assert!(
            self.files.is_none(),
            "samples read from files have no slice in memory: use Data::read_samples"
        );
        let n = self.sample_len();
        &self.x[i * n..(i + 1) * n]
    }

    /// Whether the targets are classes.
    pub fn is_classification(&self) -> bool {
        matches!(self.y, Targets::Classes { .. })
    }

    /// The samples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Data {
        if let Some(files) = &self.files {
            return Data {
                x: Vec::new(),
                sample_shape: self.sample_shape.clone(),
                y: self.y.subset(indices),
                files: Some(Arc::new(files.subset(indices))),
            };
        }
        let n = self.sample_len();
        let mut x = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            x.extend_from_slice(self.sample(i));
        }
        Data {
            x,
            sample_shape: self.sample_shape.clone(),
            y: self.y.subset(indices),
            files: None,
        }
    }

    /// How many samples each class has (empty for regression).
    pub fn class_counts(&self) -> Vec<usize> {
        match &self.y {
            Targets::Classes { labels, names } => {
                let mut counts = vec![0; names.len()];
                labels.iter().for_each(|&l| counts[l] += 1);
                counts
            }
            Targets::Values { .. } | Targets::Unlabelled { .. } => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Data {
        Data::new(
            vec![0., 1., 2., 3., 4., 5.],
            vec![2],
            Targets::Classes {
                labels: vec![0, 1, 1],
                names: vec!["a".into(), "b".into()],
            },
        )
        .unwrap()
    }

    #[test]
    fn subset_keeps_rows_and_labels_together() {
        let d = tiny().subset(&[2, 0]);
        assert_eq!(d.x, vec![4., 5., 0., 1.]);
        assert_eq!(d.y.labels().unwrap(), &[1, 0]);
        assert_eq!(d.class_counts(), vec![1, 1]);
    }

    #[test]
    fn mismatched_lengths_are_rejected() {
        let err = Data::new(vec![0.; 5], vec![2], tiny().y).unwrap_err();
        assert!(err.to_string().contains("expected 6 values"), "{err}");
    }

    #[test]
    fn labels_out_of_range_are_rejected() {
        let y = Targets::Classes {
            labels: vec![0, 2],
            names: vec!["a".into(), "b".into()],
        };
        assert!(Data::new(vec![0.; 2], vec![1], y).is_err());
    }
}
