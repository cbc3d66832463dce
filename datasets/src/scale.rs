use serde::{Deserialize, Serialize};

use crate::{Data, DataError, Targets};

/// Per-feature standardisation, `(x - mean) / std`, fitted on a training split only and then
/// applied unchanged to validation, test and prediction inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Mean of each feature over the data it was fitted on.
    pub mean: Vec<f32>,
    /// Standard deviation of each feature (1 where a feature is constant).
    pub std: Vec<f32>,
}

impl Standardizer {
    /// Fits the mean and standard deviation of every feature. A constant feature gets a
    /// standard deviation of 1 so that it maps to 0 rather than to NaN.
    pub fn fit(data: &Data) -> Self {
        let (mean, std) = column_moments(&data.x, data.sample_len());
        Self { mean, std }
    }

    /// Standardises `data` in place.
    pub fn transform(&self, data: &mut Data) -> Result<(), DataError> {
        let n = data.sample_len();
        if n != self.mean.len() {
            return Err(DataError::ShapeMismatch {
                what: "standardizer features".into(),
                expected: format!("{} features", self.mean.len()),
                got: format!("{n} features"),
            });
        }
        for row in data.x.chunks_exact_mut(n) {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (*v - self.mean[j]) / self.std[j];
            }
        }
        Ok(())
    }
}

/// Per-channel normalisation of images `[channels, height, width]`: each channel's pixels get
/// `(x - mean) / std` with the mean and standard deviation of that channel over the training
/// split (as torchvision's `Normalize` with statistics computed on the training set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelNormalizer {
    /// Mean of each channel.
    pub mean: Vec<f32>,
    /// Standard deviation of each channel.
    pub std: Vec<f32>,
}

impl ChannelNormalizer {
    /// Fits the statistics of each channel of `data`'s images. A channel constant in `data`
    /// gets a standard deviation of 1, as a constant table feature does: a tiny one would
    /// magnify any other value met later (a test image's noise) a million times.
    /// Images read from files are decoded once for it, a chunk at a time.
    pub fn fit(data: &Data) -> Result<Self, DataError> {
        let channels = image_channels(data)?;
        let plane = data.sample_len() / channels;
        let (mut sum, mut sq) = (vec![0f64; channels], vec![0f64; channels]);
        let mut chunk = Vec::new();
        let all: Vec<usize> = (0..data.len()).collect();
        for indices in all.chunks(256) {
            data.read_samples(indices, &mut chunk)?;
            for sample in chunk.chunks_exact(data.sample_len()) {
                for (c, pixels) in sample.chunks_exact(plane).enumerate() {
                    for &p in pixels {
                        sum[c] += p as f64;
                        sq[c] += (p as f64) * (p as f64);
                    }
                }
            }
        }
        let n = (data.len() * plane).max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(s, m)| std_or_one(s / n - m * m))
            .collect();
        Ok(Self {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            std,
        })
    }

    /// Normalises `data`'s images in place (images read from files, as they are read).
    pub fn transform(&self, data: &mut Data) -> Result<(), DataError> {
        let channels = image_channels(data)?;
        if channels != self.mean.len() {
            return Err(DataError::ShapeMismatch {
                what: "normaliser channels".into(),
                expected: self.mean.len().to_string(),
                got: channels.to_string(),
            });
        }
        if let Some(files) = &mut data.files {
            std::sync::Arc::make_mut(files).normalize = Some((self.mean.clone(), self.std.clone()));
            return Ok(());
        }
        let (len, plane) = (data.sample_len(), data.sample_len() / channels);
        for sample in data.x.chunks_exact_mut(len) {
            for (c, pixels) in sample.chunks_exact_mut(plane).enumerate() {
                pixels
                    .iter_mut()
                    .for_each(|p| *p = (*p - self.mean[c]) / self.std[c]);
            }
        }
        Ok(())
    }
}

fn image_channels(data: &Data) -> Result<usize, DataError> {
    match data.sample_shape.as_slice() {
        [c, _, _] if *c > 0 => Ok(*c),
        other => Err(DataError::ShapeMismatch {
            what: "image samples".into(),
            expected: "[channels, height, width]".into(),
            got: format!("{other:?}"),
        }),
    }
}

/// The standard deviation of a variance, or 1 for a constant (a standard deviation below
/// 1e-8): the one rule of every scaler here, so that a constant maps to 0, never to NaN or to
/// a huge value.
/// Regression targets standardised per output, `(y - mean) / std`, fitted on the training split
/// alone (scikit-learn's `TransformedTargetRegressor` with a `StandardScaler`). A network starts
/// with outputs near 0 and weights of unit scale: targets near 100,000 would take it thousands
/// of steps to reach, and their squared errors would swamp the gradients. The model is trained
/// on the scaled targets; [`TargetScaler::inverse`] maps its outputs back to the data's units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetScaler {
    /// Mean of each target over the data it was fitted on.
    pub mean: Vec<f32>,
    /// Standard deviation of each target (1 where a target is constant).
    pub std: Vec<f32>,
}

impl TargetScaler {
    /// Fits the mean and standard deviation of each regression target; `None` for classes
    /// (and unlabelled data), which are not scaled.
    pub fn fit(data: &Data) -> Option<Self> {
        let Targets::Values { values, names } = &data.y else {
            return None;
        };
        let (mean, std) = column_moments(values, names.len());
        Some(Self { mean, std })
    }

    /// Standardises the regression targets of `data` in place.
    pub fn transform(&self, data: &mut Data) -> Result<(), DataError> {
        let values = self.values_of(data)?;
        for row in values.chunks_exact_mut(self.mean.len()) {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (*v - self.mean[j]) / self.std[j];
            }
        }
        Ok(())
    }

    /// Maps model outputs (rows of one value per target) back to the targets' units.
    pub fn inverse(&self, rows: &mut [Vec<f32>]) {
        for row in rows {
            for (j, v) in row.iter_mut().enumerate().take(self.mean.len()) {
                *v = *v * self.std[j] + self.mean[j];
            }
        }
    }

    fn values_of<'a>(&self, data: &'a mut Data) -> Result<&'a mut Vec<f32>, DataError> {
        match &mut data.y {
            Targets::Values { values, names } if names.len() == self.mean.len() => Ok(values),
            Targets::Values { names, .. } => Err(DataError::ShapeMismatch {
                what: "regression targets".into(),
                expected: format!("{} targets", self.mean.len()),
                got: format!("{} targets ({})", names.len(), names.join(", ")),
            }),
            _ => Err(DataError::ShapeMismatch {
                what: "regression targets".into(),
                expected: format!("{} real-valued targets", self.mean.len()),
                got: "class labels".into(),
            }),
        }
    }
}

/// The mean and standard deviation (1 where constant) of each of the `width` columns of
/// row-major `values`.
fn column_moments(values: &[f32], width: usize) -> (Vec<f32>, Vec<f32>) {
    let count = (values.len() / width.max(1)).max(1) as f64;
    let mut mean = vec![0f64; width];
    let mut sq = vec![0f64; width];
    for row in values.chunks_exact(width.max(1)) {
        for (j, &v) in row.iter().enumerate() {
            mean[j] += v as f64;
            sq[j] += (v as f64) * (v as f64);
        }
    }
    let mean: Vec<f64> = mean.iter().map(|m| m / count).collect();
    let std = sq
        .iter()
        .zip(&mean)
        .map(|(s, m)| std_or_one(s / count - m * m))
        .collect();
    (mean.into_iter().map(|m| m as f32).collect(), std)
}

fn std_or_one(variance: f64) -> f32 {
    let std = variance.max(0.0).sqrt();
    if std < 1e-8 { 1.0 } else { std as f32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_normalised_separately() {
        let y = Targets::Unlabelled { n: 2 };
        // Two 2-channel 1x2 images: channel 0 holds 0, 2, 4, 6; channel 1 is constant 5.
        let mut d = Data::new(vec![0., 2., 5., 5., 4., 6., 5., 5.], vec![2, 1, 2], y).unwrap();
        let n = ChannelNormalizer::fit(&d).unwrap();
        assert_eq!(n.mean, vec![3.0, 5.0]);
        assert!((n.std[0] - 5f32.sqrt()).abs() < 1e-6);
        n.transform(&mut d).unwrap();
        assert!((d.x[0] + 3.0 / 5f32.sqrt()).abs() < 1e-6);
        assert_eq!(d.x[2], 0.0);
        // The constant channel's std is 1: a later image's 5.5 there becomes 0.5, not 5e5.
        assert_eq!(n.std[1], 1.0);
        let mut later = Data::new(
            vec![3., 3., 5.5, 5.5],
            vec![2, 1, 2],
            Targets::Unlabelled { n: 1 },
        )
        .unwrap();
        n.transform(&mut later).unwrap();
        assert_eq!(later.x[2], 0.5);
        let flat = Data::new(vec![0.; 4], vec![4], Targets::Unlabelled { n: 1 }).unwrap();
        assert!(ChannelNormalizer::fit(&flat).is_err());
    }

    #[test]
    fn fitted_features_have_zero_mean_unit_std() {
        let y = Targets::Values {
            values: vec![0.; 4],
            names: vec!["y".into()],
        };
        let mut d = Data::new(vec![1., 5., 3., 5., 5., 5., 7., 5.], vec![2], y).unwrap();
        let s = Standardizer::fit(&d);
        assert_eq!(s.mean, vec![4., 5.]);
        assert!((s.std[0] - 5f32.sqrt()).abs() < 1e-6);
        assert_eq!(s.std[1], 1.0, "constant feature");
        s.transform(&mut d).unwrap();
        let col0: Vec<f32> = d.x.iter().step_by(2).copied().collect();
        assert!(col0.iter().sum::<f32>().abs() < 1e-6);
        assert!(d.x.iter().skip(1).step_by(2).all(|&v| v == 0.0));
    }

    #[test]
    fn targets_are_standardised_per_output_and_mapped_back() {
        // Two targets: prices near 100,000 (mean 100,000, std 2,000) and a constant 7.
        let y = Targets::Values {
            values: vec![98_000., 7., 102_000., 7.],
            names: vec!["price".into(), "rooms".into()],
        };
        let mut d = Data::new(vec![0., 1.], vec![1], y).unwrap();
        let s = TargetScaler::fit(&d).expect("regression");
        assert_eq!(
            (s.mean.clone(), s.std.clone()),
            (vec![100_000., 7.], vec![2_000., 1.])
        );
        s.transform(&mut d).unwrap();
        let Targets::Values { values, .. } = &d.y else {
            unreachable!()
        };
        assert_eq!(values, &[-1., 0., 1., 0.]);
        let mut outputs = vec![vec![0.5, 2.0]];
        s.inverse(&mut outputs);
        assert_eq!(outputs, vec![vec![101_000., 9.]]);
        let classes = Targets::Classes {
            labels: vec![0, 1],
            names: vec!["a".into(), "b".into()],
        };
        let mut labelled = Data::new(vec![0., 1.], vec![1], classes).unwrap();
        assert_eq!(TargetScaler::fit(&labelled), None);
        let err = s.transform(&mut labelled).unwrap_err().to_string();
        assert!(err.contains("class labels"), "{err}");
    }
}
