use serde::{Deserialize, Serialize};

use crate::{Data, DataError};

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
        let n = data.sample_len();
        let count = data.len().max(1) as f64;
        let mut mean = vec![0f64; n];
        let mut sq = vec![0f64; n];
        for row in data.x.chunks_exact(n) {
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
        Self {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            std,
        }
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
    pub fn fit(data: &Data) -> Result<Self, DataError> {
        let channels = image_channels(data)?;
        let plane = data.sample_len() / channels;
        let (mut sum, mut sq) = (vec![0f64; channels], vec![0f64; channels]);
        for sample in data.x.chunks_exact(data.sample_len()) {
            for (c, pixels) in sample.chunks_exact(plane).enumerate() {
                for &p in pixels {
                    sum[c] += p as f64;
                    sq[c] += (p as f64) * (p as f64);
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

    /// Normalises `data`'s images in place.
    pub fn transform(&self, data: &mut Data) -> Result<(), DataError> {
        let channels = image_channels(data)?;
        if channels != self.mean.len() {
            return Err(DataError::ShapeMismatch {
                what: "normaliser channels".into(),
                expected: self.mean.len().to_string(),
                got: channels.to_string(),
            });
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
fn std_or_one(variance: f64) -> f32 {
    let std = variance.max(0.0).sqrt();
    if std < 1e-8 { 1.0 } else { std as f32 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Targets;

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
}
