//! Gradient and weight statistics per parameter tensor, measured on a sample of the training
//! steps, and the activation layers' units on a fixed probe batch: what the diagnosis reads to
//! find vanishing and exploding gradients and dead and saturated units.
//!
//! Each of the run's first [`GradientProbe::WARM_UP`] steps, then each epoch's first and every
//! `every`-th, records,
//! for each parameter tensor, the gradient's L2 norm, its mean absolute value and its share of
//! exactly-zero entries, and the weight's norm and variance; the step after it records the update ratio `||W_{k+1} - W_k|| / ||W_k||`. Each
//! measurement is one small reduction per tensor and one read per step measured, so that the
//! measurements can stay on by default.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use kiln_common::{Activation, BatchInput, LayerActivations, Model};
use serde::{Deserialize, Serialize};

/// One parameter tensor's statistics over an epoch's measured steps (the gradient's means over
/// them, the update ratio's largest, the weight's at the last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamStats {
    /// The parameter's path in the model (`hidden.0.linear.weight`).
    pub name: String,
    /// How many values it has.
    pub size: usize,
    /// The gradient's L2 norm.
    pub grad_norm: f64,
    /// The gradient's mean absolute value.
    pub grad_mean_abs: f64,
    /// The share of the gradient's entries that are exactly zero.
    pub zero_grad_share: f64,
    /// The weight's L2 norm.
    pub weight_norm: f64,
    /// The variance of the weight's values.
    pub weight_var: f64,
    /// `||W_{k+1} - W_k|| / ||W_k||` of one optimiser step, the largest of the epoch's
    /// measured steps; `None` where not measured.
    pub update_ratio: Option<f64>,
}

/// A unit is saturated on an observation where its activation's slope is below this share of
/// the slope's peak (sigmoid: |x| > 5.99; tanh: |x| > 2.99): it passes almost no gradient.
pub const SATURATION_SLOPE: f64 = 0.01;
/// A unit is saturated when it is so on at least this share of the probe's observations.
pub const SATURATED_OBSERVATIONS: f64 = 0.9;
/// How many training samples the probe batch holds: the first ones, the same every epoch.
pub const PROBE_SAMPLES: usize = 256;

/// One activation layer's units on the probe batch at the end of an epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitStats {
    /// The layer's path in the model (`hidden.0`).
    pub layer: String,
    /// How many units it has (channels, for a convolution).
    pub units: usize,
    /// ReLU layers: the share of units whose input is at most 0 on every probe observation,
    /// which output 0 and pass no gradient for any of them. `None` for other activations
    /// (leaky ReLU, ELU and GELU pass a gradient below 0: their units do not die).
    pub dead_share: Option<f64>,
    /// Sigmoid and tanh layers: the share of units in their flat tails (see
    /// [`SATURATION_SLOPE`]) on at least [`SATURATED_OBSERVATIONS`] of the observations.
    /// `None` for other activations.
    pub saturated_share: Option<f64>,
}

impl UnitStats {
    /// Measures one layer's pre-activations.
    pub fn of(layer: &LayerActivations) -> Self {
        let [observations, units] = layer.pre.dims();
        let share = |t: Tensor<2>| -> f64 {
            let v: Vec<f32> = t.sum().into_data().try_to_vec().unwrap_or_default();
            v.first().map_or(0.0, |&c| c as f64 / units.max(1) as f64)
        };
        let pre = layer.pre.clone();
        let dead_share = (layer.activation == Activation::Relu && observations > 0).then(|| {
            let active = pre.clone().greater_elem(0.0).float().sum_dim(0);
            share(active.equal_elem(0.0).float())
        });
        let tail = match layer.activation {
            Activation::Sigmoid => {
                // sigma (1 - sigma) = c * 1/4 where sigma = (1 - sqrt(1 - c)) / 2.
                let sigma = (1.0 - (1.0 - SATURATION_SLOPE).sqrt()) / 2.0;
                Some((sigma / (1.0 - sigma)).ln().abs())
            }
            // 1 - tanh^2 = c.
            Activation::Tanh => Some((1.0 - SATURATION_SLOPE).sqrt().atanh()),
            _ => None,
        };
        let saturated_share = tail.filter(|_| observations > 0).map(|bound| {
            let flat = pre.abs().greater_elem(bound).float().mean_dim(0);
            share(flat.greater_equal_elem(SATURATED_OBSERVATIONS).float())
        });
        Self {
            layer: layer.layer.clone(),
            units,
            dead_share,
            saturated_share,
        }
    }
}

/// The probe batch: a fixed set of training samples, stored flat.
#[derive(Debug, Clone)]
struct ProbeBatch {
    values: Vec<f32>,
    samples: usize,
    sample_shape: Vec<usize>,
}

/// A distribution of values as TensorBoard's `HistogramProto` holds it: 30 equal-width buckets
/// between the smallest and the largest value, each bucket's right edge and count.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
    /// How many values.
    pub num: f64,
    /// Their sum.
    pub sum: f64,
    /// The sum of their squares.
    pub sum_squares: f64,
    /// Each bucket's right edge, increasing.
    pub bucket_limit: Vec<f64>,
    /// Each bucket's count.
    pub bucket: Vec<f64>,
}

impl Histogram {
    /// The buckets of a histogram.
    pub const BUCKETS: usize = 30;

    /// The histogram of `values` (empty: no buckets).
    pub fn of(values: &[f32]) -> Self {
        let (mut min, mut max, mut sum, mut sum_squares) =
            (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0.0);
        for &v in values {
            let v = v as f64;
            min = min.min(v);
            max = max.max(v);
            sum += v;
            sum_squares += v * v;
        }
        if values.is_empty() {
            (min, max) = (0.0, 0.0);
        }
        let width = (max - min) / Self::BUCKETS as f64;
        let mut bucket = vec![0.0; if values.is_empty() { 0 } else { Self::BUCKETS }];
        for &v in values {
            let i = if width > 0.0 {
                (((v as f64 - min) / width) as usize).min(Self::BUCKETS - 1)
            } else {
                Self::BUCKETS - 1
            };
            bucket[i] += 1.0;
        }
        let bucket_limit = (1..=bucket.len())
            .map(|i| {
                if i == bucket.len() {
                    max
                } else {
                    min + width * i as f64
                }
            })
            .collect();
        Self {
            min,
            max,
            num: values.len() as f64,
            sum,
            sum_squares,
            bucket_limit,
            bucket,
        }
    }
}

/// An epoch's weight (at its end) and gradient (at its last measured step) histograms of one
/// parameter tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamHistograms {
    /// The parameter's path in the model.
    pub name: String,
    /// Its values at the end of the epoch.
    pub weights: Histogram,
    /// Its gradient at the epoch's last measured step.
    pub gradients: Option<Histogram>,
}

/// What one measured step saw of one parameter tensor.
#[derive(Debug, Clone)]
struct Seen {
    name: String,
    size: usize,
    grad_sq: f64,
    grad_abs: f64,
    zeros: f64,
    weight_sq: f64,
    weight_sum: f64,
    update: Option<f64>,
}

/// Measures every `every`-th training step (shared by the step and the epoch's end).
pub struct GradientProbe {
    every: usize,
    /// The samples the units are measured on; `None`: units not measured.
    batch: Option<ProbeBatch>,
    /// Keep each epoch's final weights and last gradients for histograms.
    histograms: bool,
    steps: AtomicUsize,
    /// Set at each epoch's end: the next step starts an epoch.
    epoch_started: AtomicBool,
    state: Mutex<ProbeState>,
}

#[derive(Default)]
struct ProbeState {
    /// The epoch's measurements so far.
    seen: Vec<Seen>,
    /// The weights at the last measured step, to take the next step's update from.
    before: Option<(Device, Vec<(String, Tensor<1>)>)>,
    /// The last measured step's gradients, by name, for the epoch's histograms.
    last_grads: Vec<(String, Tensor<1>)>,
    /// The weights as validation first saw them this epoch (its end), by name.
    end_weights: Option<Vec<(String, Tensor<1>)>>,
    /// The units as validation first saw them this epoch.
    end_units: Option<Vec<UnitStats>>,
}

impl std::fmt::Debug for GradientProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GradientProbe")
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl GradientProbe {
    /// The default sampling: one training step in 32 (and each epoch's first).
    pub const EVERY: usize = 32;
    /// The run's first steps, all measured.
    pub const WARM_UP: usize = 16;

    /// Measures each of the first [`WARM_UP`](Self::WARM_UP) steps, then each epoch's first and
    /// one in `every` (at least 1); with
    /// `histograms`, also
    /// keeps each epoch's final weights (as validation sees them) and its last measured step's
    /// gradients for [`take_histograms`](Self::take_histograms).
    pub fn new(every: usize, histograms: bool) -> Self {
        Self {
            every: every.max(1),
            batch: None,
            histograms,
            steps: AtomicUsize::new(0),
            epoch_started: AtomicBool::new(false),
            state: Mutex::default(),
        }
    }

    /// Also measures the activation layers' units ([`UnitStats`]) at each epoch's end, on the
    /// first [`PROBE_SAMPLES`] samples of `data`.
    pub fn with_units(mut self, data: &kiln_datasets::Data) -> Self {
        let samples = data.len().min(PROBE_SAMPLES);
        let first: Vec<usize> = (0..samples).collect();
        let mut values = Vec::new();
        if data.read_samples(&first, &mut values).is_err() {
            // A corrupt file among them: the run reports it when training reads it.
            return self;
        }
        self.batch = Some(ProbeBatch {
            values,
            samples,
            sample_shape: data.sample_shape.clone(),
        });
        self
    }

    /// Called by the training step with the model it ran and its gradients.
    pub(crate) fn step<M: Module>(&self, model: &M, grads: &GradientsParams) {
        let n = self.steps.fetch_add(1, Ordering::Relaxed);
        // The run's first steps are all measured: a learning rate that blows the weights up
        // does so there, in one step that sampling would miss. Each epoch's first step is
        // measured too, so that no epoch goes without.
        let first_of_epoch = self.epoch_started.swap(false, Ordering::Relaxed);
        let measure = n < Self::WARM_UP || first_of_epoch || n.is_multiple_of(self.every);
        let mut state = self.state.lock().expect("probe lock");
        if state.before.is_none() && !measure {
            return;
        }
        let mut tensors = Tensors::default();
        model.visit(&mut tensors);
        if let Some((device, before)) = state.before.take() {
            // Every tensor's two sums in one tensor, read to the host at once: one
            // synchronisation per measured step, not one per tensor.
            let mut names = Vec::new();
            let mut parts = Vec::new();
            for ((name, w), (old_name, old)) in tensors.weights.iter().zip(&before) {
                if name != old_name || w.device() != device {
                    continue;
                }
                let diff = w.clone() - old.clone();
                names.push(name.clone());
                parts.push((diff.clone() * diff).sum());
                parts.push((old.clone() * old.clone()).sum());
            }
            let v = read_all(parts);
            for (name, pair) in names.iter().zip(v.chunks_exact(2)) {
                // A weight at exactly zero (a LoRA factor B as it starts) has no scale to
                // compare a step with.
                if pair[1] == 0.0 {
                    continue;
                }
                let ratio = (pair[0] as f64).sqrt() / (pair[1] as f64).sqrt();
                if let Some(seen) = state.seen.iter_mut().rev().find(|s| &s.name == name) {
                    seen.update = Some(ratio);
                }
            }
        }
        if !measure {
            return;
        }
        state.last_grads.clear();
        let mut measured = Vec::new();
        let mut parts = Vec::new();
        for (i, (name, weight)) in tensors.weights.iter().enumerate() {
            let Some(grad) = tensors.grad(i, grads) else {
                continue;
            };
            if self.histograms {
                state.last_grads.push((name.clone(), grad.clone()));
            }
            measured.push((name.clone(), weight.dims()[0]));
            parts.extend([
                (grad.clone() * grad.clone()).sum(),
                grad.clone().abs().sum(),
                grad.equal_elem(0.0).float().sum(),
                (weight.clone() * weight.clone()).sum(),
                weight.clone().sum(),
            ]);
        }
        let v = read_all(parts);
        for ((name, size), five) in measured.into_iter().zip(v.chunks_exact(5)) {
            let [grad_sq, grad_abs, zeros, weight_sq, weight_sum] =
                [five[0], five[1], five[2], five[3], five[4]].map(|x| x as f64);
            state.seen.push(Seen {
                name,
                size,
                grad_sq,
                grad_abs,
                zeros,
                weight_sq,
                weight_sum,
                update: None,
            });
        }
        let device = tensors.weights.first().map(|(_, w)| w.device());
        state.before = device.map(|d| (d, tensors.weights));
    }

    /// Called by the validation step: the first call of an epoch sees the epoch's final
    /// weights, keeps them for the histograms and measures the units on the probe batch.
    pub(crate) fn validation_step<M: Model>(&self, model: &M) {
        if !self.histograms && self.batch.is_none() {
            return;
        }
        let mut state = self.state.lock().expect("probe lock");
        if self.histograms && state.end_weights.is_none() {
            let mut tensors = Tensors::default();
            model.visit(&mut tensors);
            state.end_weights = Some(tensors.weights);
        }
        if let (Some(batch), None) = (&self.batch, &state.end_units)
            && let Some(device) = model.devices().into_iter().next()
            && batch.samples > 0
        {
            let input = <M::Input as BatchInput>::from_samples(
                batch.values.clone(),
                batch.samples,
                &batch.sample_shape,
                &device,
            );
            let units = model.activations(input).iter().map(UnitStats::of).collect();
            state.end_units = Some(units);
        }
    }

    /// The units measured at the epoch's end (none before validation); the next epoch's
    /// start afresh.
    pub fn take_units(&self) -> Vec<UnitStats> {
        let mut state = self.state.lock().expect("probe lock");
        state.end_units.take().unwrap_or_default()
    }

    /// The epoch's weight and gradient histograms, per parameter tensor, read to the host;
    /// the next epoch's start afresh.
    pub fn take_histograms(&self) -> Vec<ParamHistograms> {
        let mut state = self.state.lock().expect("probe lock");
        let weights = state.end_weights.take().unwrap_or_default();
        let grads = std::mem::take(&mut state.last_grads);
        let host = |t: &Tensor<1>| -> Vec<f32> { t.to_data().try_to_vec().unwrap_or_default() };
        weights
            .iter()
            .map(|(name, w)| ParamHistograms {
                name: name.clone(),
                weights: Histogram::of(&host(w)),
                gradients: grads
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, g)| Histogram::of(&host(g))),
            })
            .collect()
    }

    /// The epoch's statistics per parameter tensor, in the model's order; the measurements
    /// start afresh.
    pub fn take_epoch(&self) -> Vec<ParamStats> {
        self.epoch_started.store(true, Ordering::Relaxed);
        let mut state = self.state.lock().expect("probe lock");
        let seen = std::mem::take(&mut state.seen);
        let mut names: Vec<&str> = Vec::new();
        for s in &seen {
            if !names.contains(&s.name.as_str()) {
                names.push(&s.name);
            }
        }
        names
            .iter()
            .map(|name| {
                let of: Vec<&Seen> = seen.iter().filter(|s| s.name == *name).collect();
                let count = of.len() as f64;
                let mean = |f: &dyn Fn(&Seen) -> f64| of.iter().map(|s| f(s)).sum::<f64>() / count;
                let last = of.last().expect("at least one");
                let size = last.size.max(1) as f64;
                let updates: Vec<f64> = of.iter().filter_map(|s| s.update).collect();
                let weight_mean = last.weight_sum / size;
                ParamStats {
                    name: name.to_string(),
                    size: last.size,
                    grad_norm: mean(&|s| s.grad_sq.sqrt()),
                    grad_mean_abs: mean(&|s| s.grad_abs / s.size.max(1) as f64),
                    zero_grad_share: mean(&|s| s.zeros / s.size.max(1) as f64),
                    weight_norm: last.weight_sq.sqrt(),
                    weight_var: (last.weight_sq / size - weight_mean * weight_mean).max(0.0),
                    update_ratio: (!updates.is_empty())
                        .then(|| updates.iter().copied().fold(0.0, f64::max)),
                }
            })
            .collect()
    }
}

/// One-element tensors read to the host together (empty when there are none or the read fails).
fn read_all(parts: Vec<Tensor<1>>) -> Vec<f32> {
    if parts.is_empty() {
        return Vec::new();
    }
    Tensor::cat(parts, 0)
        .into_data()
        .try_to_vec()
        .unwrap_or_default()
}

/// The float parameters of a module, flattened, with their paths and ids.
#[derive(Default)]
struct Tensors {
    path: Vec<String>,
    weights: Vec<(String, Tensor<1>)>,
    ids: Vec<(burn::module::ParamId, usize)>,
}

impl Tensors {
    /// The `i`-th parameter's gradient, flattened.
    fn grad(&self, i: usize, grads: &GradientsParams) -> Option<Tensor<1>> {
        let (id, rank) = self.ids[i];
        macro_rules! flat {
            ($($d:literal),*) => {
                match rank {
                    $($d => grads.get::<$d>(id).map(|g| g.flatten::<1>(0, $d - 1)),)*
                    _ => None,
                }
            };
        }
        flat!(1, 2, 3, 4, 5)
    }
}

impl ModuleVisitor for Tensors {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let value = if value.device().is_autodiff() {
            value.inner()
        } else {
            value
        };
        let flat = if D == 1 {
            value.reshape([-1])
        } else {
            value.flatten::<1>(0, D - 1)
        };
        self.weights.push((self.path.join("."), flat));
        self.ids.push((param.id, D));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    #[test]
    fn dead_and_saturated_units_are_counted_by_hand() {
        let device = Device::flex();
        // Four units over three observations: unit 1 is never above 0 (dead for a ReLU);
        // units 2 and 3 stay beyond tanh's tail (2.99) on every observation, unit 2 also
        // beyond sigmoid's (5.99); unit 0 crosses both.
        let pre = Tensor::<2>::from_floats(
            [
                [1.0, -1.0, 7.0, -4.0],
                [-2.0, 0.0, -8.0, 3.5],
                [0.5, -3.0, 6.5, 3.2],
            ],
            &device,
        );
        let of = |activation| {
            UnitStats::of(&LayerActivations {
                layer: "hidden.0".into(),
                activation,
                pre: pre.clone(),
            })
        };
        let relu = of(Activation::Relu);
        assert_eq!(relu.units, 4);
        assert_eq!((relu.dead_share, relu.saturated_share), (Some(0.25), None));
        assert_eq!(of(Activation::Tanh).saturated_share, Some(0.5));
        assert_eq!(of(Activation::Sigmoid).saturated_share, Some(0.25));
        let leaky = of(Activation::LeakyRelu);
        assert_eq!((leaky.dead_share, leaky.saturated_share), (None, None));
        // The tails' edges: where the slope is 1% of its peak.
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let slope = |x: f64| sigmoid(x) * (1.0 - sigmoid(x)) / 0.25;
        assert!(slope(5.98) > SATURATION_SLOPE && slope(6.0) < SATURATION_SLOPE);
        let tanh_slope = |x: f64| 1.0 - x.tanh().powi(2);
        assert!(tanh_slope(2.98) > SATURATION_SLOPE && tanh_slope(3.0) < SATURATION_SLOPE);
    }

    #[test]
    fn histograms_count_sum_and_bucket_every_value() {
        let h = Histogram::of(&[0.0, 1.0, 2.0, 3.0, 30.0]);
        assert_eq!(
            (h.min, h.max, h.num, h.sum, h.sum_squares),
            (0.0, 30.0, 5.0, 36.0, 914.0)
        );
        assert_eq!(h.bucket.len(), Histogram::BUCKETS);
        assert_eq!(h.bucket.iter().sum::<f64>(), 5.0);
        assert_eq!(
            (h.bucket[0], h.bucket[1], h.bucket[29]),
            (1.0, 1.0, 1.0),
            "{h:?}"
        );
        assert_eq!((h.bucket_limit[0], h.bucket_limit[29]), (1.0, 30.0));
        let constant = Histogram::of(&[2.0; 4]);
        assert_eq!((constant.num, constant.bucket[29]), (4.0, 4.0));
    }
    use burn::tensor::TensorData;

    #[derive(Module, Debug)]
    struct Net {
        linear: Linear,
    }

    /// One linear layer, y = x W + b, loss = sum(y): dL/dW[i][j] = sum over the batch of
    /// x[i], dL/db[j] = batch size; by hand for x = [[1, 2], [3, -4]].
    #[test]
    fn gradients_weights_and_updates_match_hand_computation() {
        let device = Device::flex().autodiff();
        device.seed(0);
        let net = Net {
            linear: LinearConfig::new(2, 3).init(&device),
        };
        let x = Tensor::<2>::from_data(TensorData::new(vec![1f32, 2., 3., -4.], [2, 2]), &device);
        let loss = net.linear.forward(x).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        let probe = GradientProbe::new(2, false);
        probe.step(&net, &grads);
        // Weight gradient: rows [4, 4, 4] and [-2, -2, -2]; bias gradient [2, 2, 2].
        let stats = probe.take_epoch();
        let names: Vec<&str> = stats.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["linear.weight", "linear.bias"]);
        let w = &stats[0];
        assert!(
            (w.grad_norm - (3.0f64 * 16.0 + 3.0 * 4.0).sqrt()).abs() < 1e-5,
            "{w:?}"
        );
        assert!((w.grad_mean_abs - 3.0).abs() < 1e-6, "{w:?}");
        assert_eq!((w.size, w.zero_grad_share), (6, 0.0));
        let values: Vec<f32> = net.linear.weight.val().into_data().try_to_vec().unwrap();
        let norm = values
            .iter()
            .map(|v| (*v as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((w.weight_norm - norm).abs() < 1e-5);
        let mean = values.iter().map(|v| *v as f64).sum::<f64>() / 6.0;
        let var = values
            .iter()
            .map(|v| (*v as f64 - mean).powi(2))
            .sum::<f64>()
            / 6.0;
        assert!((w.weight_var - var).abs() < 1e-6);
        assert!((stats[1].grad_norm - 12f64.sqrt()).abs() < 1e-6);

        // A step of -0.1 * gradient on the weight; the next step measures its ratio.
        let probe = GradientProbe::new(2, false);
        probe.step(&net, &grads);
        let mut moved = net.clone();
        let g: Tensor<2> = grads.get::<2>(net.linear.weight.id).unwrap();
        let step = net.linear.weight.val().inner() - g * 0.1;
        moved.linear.weight = Param::from_tensor(Tensor::from_inner(step));
        probe.step(&moved, &grads);
        let stats = probe.take_epoch();
        let expected = 0.1 * (3.0f64 * 16.0 + 3.0 * 4.0).sqrt() / norm;
        let ratio = stats[0].update_ratio.unwrap();
        assert!((ratio - expected).abs() < 1e-4, "{ratio} vs {expected}");
        assert_eq!(stats[1].update_ratio, Some(0.0), "the bias did not move");
    }
}
