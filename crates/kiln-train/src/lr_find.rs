//! Lightning's learning-rate finder: train for a few hundred batches while the rate grows
//! exponentially, and suggest the rate where the smoothed loss falls fastest.

use std::path::Path;
use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use kiln_common::Model;
use kiln_datasets::Data;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::epoch_end::hook::epoch_seed;
use crate::records::plot::{PlotCurve, plot_curve};
use crate::{DataBatcher, Supervised, TrainError, TrainerConfig};

/// The sweep. Lightning's defaults, but for `steps` (Lightning's `num_training`, 100): 200
/// batches give a smoother curve on small data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrFinder {
    /// The first rate. Default: 1e-7.
    pub min_lr: f64,
    /// The last rate. Default: 1.
    pub max_lr: f64,
    /// Batches in the sweep, each at its own rate. Default: 200.
    pub steps: usize,
    /// Weight of the past in the exponentially smoothed loss. Default: 0.98.
    pub smoothing: f64,
    /// The sweep stops once the smoothed loss exceeds this multiple of its best. Default: 4.
    pub diverge: f64,
}

impl Default for LrFinder {
    fn default() -> Self {
        Self {
            min_lr: 1e-7,
            max_lr: 1.0,
            steps: 200,
            smoothing: 0.98,
            diverge: 4.0,
        }
    }
}

/// What the sweep saw, and the rate it suggests.
#[derive(Debug, Clone, PartialEq)]
pub struct LrFindResult {
    /// The learning rate of each step of the sweep.
    pub lrs: Vec<f64>,
    /// The training loss at each step.
    pub losses: Vec<f64>,
    /// Bias-corrected exponential moving average of `losses`.
    pub smoothed: Vec<f64>,
    /// The rate where the smoothed loss falls fastest (steepest negative slope against
    /// log(rate)); `None` when the sweep was too short to tell.
    pub suggestion: Option<f64>,
}

impl LrFinder {
    /// Checks the sweep's settings.
    pub fn check(&self) -> Result<(), TrainError> {
        if !(self.min_lr > 0.0 && self.min_lr < self.max_lr && self.max_lr.is_finite()) {
            return Err(TrainError::option(
                "lr_find",
                format!(
                    "needs 0 < min_lr < max_lr, got {} and {}",
                    self.min_lr, self.max_lr
                ),
            ));
        }
        if self.steps < 20 {
            return Err(TrainError::option("lr_find", "needs at least 20 steps"));
        }
        if !(0.0..1.0).contains(&self.smoothing) || self.diverge <= 1.0 {
            return Err(TrainError::option(
                "lr_find",
                "smoothing must lie in [0, 1) and diverge above 1",
            ));
        }
        Ok(())
    }

    /// The rate of step `i` (from 0): `min_lr * (max_lr / min_lr)^(i / (steps - 1))`.
    pub fn lr_at(&self, i: usize) -> f64 {
        let t = i as f64 / (self.steps - 1).max(1) as f64;
        self.min_lr * (self.max_lr / self.min_lr).powf(t)
    }

    /// Runs the sweep on a copy of `model` with `config`'s optimiser, batch size, task and
    /// seed, drawing batches from `data` (reshuffled after each pass). The model is not
    /// changed.
    pub fn run<M: Model>(
        &self,
        model: &M,
        data: &Data,
        config: &TrainerConfig,
        device: &Device,
    ) -> Result<LrFindResult, TrainError> {
        self.check()?;
        config.check()?;
        config.check_memory(model)?;
        let train_device = device.clone().autodiff();
        train_device.seed(config.seed);
        let mut supervised = Supervised {
            model: model.clone().train().fork(&train_device),
            task: config.task,
            probe: None,
            distillation: None,
            loss_scale: None,
        };
        let mut optim = config.optimizer.build();
        let batcher = DataBatcher::<M::Input>::new(Arc::new(data.clone()));
        let mut order: Vec<usize> = (0..data.len()).collect();
        let mut pass = 0;
        let mut cursor = order.len();
        let (mut lrs, mut losses, mut smoothed) = (Vec::new(), Vec::new(), Vec::new());
        let mut average = 0.0;
        let mut best = f64::INFINITY;
        for step in 0..self.steps {
            if cursor + config.batch_size > order.len() {
                pass += 1;
                let mut rng = rand::rngs::StdRng::seed_from_u64(epoch_seed(config.seed, pass));
                order.shuffle(&mut rng);
                cursor = 0;
            }
            let end = (cursor + config.batch_size).min(order.len());
            let batch = batcher.batch(order[cursor..end].to_vec(), &train_device);
            cursor = end;
            let lr = self.lr_at(step);
            let output = supervised.forward_loss(batch);
            let loss = output.loss.clone().into_scalar::<f32>() as f64;
            let grads = GradientsParams::from_grads(output.loss.backward(), &supervised);
            supervised = optim.step(lr, supervised, grads);
            if !loss.is_finite() {
                break;
            }
            average = self.smoothing * average + (1.0 - self.smoothing) * loss;
            let corrected = average / (1.0 - self.smoothing.powi(step as i32 + 1));
            lrs.push(lr);
            losses.push(loss);
            smoothed.push(corrected);
            best = best.min(corrected);
            if step > 0 && corrected > self.diverge * best {
                break;
            }
        }
        let suggestion = steepest(&lrs, &smoothed);
        Ok(LrFindResult {
            lrs,
            losses,
            smoothed,
            suggestion,
        })
    }
}

/// The rate at the steepest descent of `smoothed` against log(rate), as Lightning picks it:
/// the most negative finite-difference slope, skipping the first 10 points (the average is
/// still settling) and the last one.
fn steepest(lrs: &[f64], smoothed: &[f64]) -> Option<f64> {
    let (skip_begin, skip_end) = (10, 1);
    if smoothed.len() < skip_begin + skip_end + 3 {
        return None;
    }
    let (lrs, ys) = (
        &lrs[skip_begin..lrs.len() - skip_end],
        &smoothed[skip_begin..smoothed.len() - skip_end],
    );
    let xs: Vec<f64> = lrs.iter().map(|lr| lr.ln()).collect();
    (1..ys.len() - 1)
        .map(|i| (i, (ys[i + 1] - ys[i - 1]) / (xs[i + 1] - xs[i - 1])))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| lrs[i])
}

impl LrFindResult {
    /// `lr,loss,smoothed_loss` per step.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("lr,loss,smoothed_loss\n");
        for ((lr, loss), s) in self.lrs.iter().zip(&self.losses).zip(&self.smoothed) {
            out.push_str(&format!("{lr:.6e},{loss:.6},{s:.6}\n"));
        }
        out
    }

    /// The loss against the rate (log scale), the suggestion marked.
    pub fn plot(&self, path: &Path) -> Result<(), TrainError> {
        let raw: Vec<(f64, f64)> = self.lrs.iter().copied().zip(self.losses.clone()).collect();
        let smooth: Vec<(f64, f64)> = self
            .lrs
            .iter()
            .copied()
            .zip(self.smoothed.clone())
            .collect();
        plot_curve(
            path,
            &PlotCurve {
                title: "learning-rate finder",
                x_label: "learning rate (log scale)",
                y_label: "training loss",
                curves: vec![("loss", raw), ("smoothed loss", smooth)],
                mark: self
                    .suggestion
                    .map(|lr| (format!("suggested {lr:.2e}"), lr)),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rates_grow_exponentially_from_min_to_max() {
        let f = LrFinder {
            min_lr: 1e-6,
            max_lr: 1.0,
            steps: 7,
            ..Default::default()
        };
        let rates: Vec<f64> = (0..7).map(|i| f.lr_at(i)).collect();
        for (r, want) in rates.iter().zip([1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]) {
            assert!((r / want - 1.0).abs() < 1e-9, "{r} vs {want}");
        }
    }

    #[test]
    fn the_suggestion_is_where_the_loss_falls_fastest() {
        // Flat, then a steep fall around 1e-3, then a rise: the steepest point is the middle
        // of the fall.
        let lrs: Vec<f64> = (0..40)
            .map(|i| 10f64.powf(-6.0 + i as f64 * 0.15))
            .collect();
        let ys: Vec<f64> = lrs
            .iter()
            .map(|lr| {
                let x = lr.log10() + 3.0;
                2.0 - (x * 3.0).tanh() + if x > 1.5 { (x - 1.5) * 4.0 } else { 0.0 }
            })
            .collect();
        let s = steepest(&lrs, &ys).unwrap();
        assert!((s.log10() + 3.0).abs() < 0.2, "suggested {s}");
        assert_eq!(steepest(&lrs[..12], &ys[..12]), None, "too short to tell");
    }
}
