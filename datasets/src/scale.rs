use serde::{Deserialize, Serialize};

use crate::{Data, DataError};

/// Per-feature standardisation, `(x - mean) / std`, fitted on a training split only and then
/// applied unchanged to validation, test and prediction inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    pub mean: Vec<f32>,
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
            .map(|(s, m)| {
                let var = (s / count - m * m).max(0.0);
                if var.sqrt() < 1e-8 {
                    1.0
                } else {
                    var.sqrt() as f32
                }
            })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Targets;

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
