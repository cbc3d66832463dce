//! Dynamic loss scaling for f16 training (PyTorch's `GradScaler`, Keras's
//! `LossScaleOptimizer`): float16's smallest normal value is 6.1e-5, and gradients of a
//! well-trained model's later layers fall below it and vanish. Each training step multiplies the
//! loss by a scale before the backward pass (so every gradient of the float16 products is
//! larger by that factor) and divides the float32 parameter gradients by it after. A step whose
//! gradients overflowed (an infinity or NaN anywhere) is skipped: the optimiser does not apply
//! it and the scale halves. After [`LossScale::GROWTH_INTERVAL`] good steps in a row, the scale
//! doubles. The skipped steps are counted, not errors; a loss that is itself not finite (the
//! forward pass overflowed, or the run diverged) is still TerminateOnNaN's.

use std::sync::Mutex;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Bool, Tensor};
use serde::{Deserialize, Serialize};

/// The scaler's state: what a checkpoint keeps so that a resumed run scales as the
/// uninterrupted one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScale {
    /// The factor the loss is multiplied by.
    pub scale: f32,
    /// Good steps since the scale last changed.
    pub good_steps: u32,
    /// Steps skipped since the run began (their gradients were not finite).
    pub skipped_steps: u64,
}

impl Default for LossScale {
    fn default() -> Self {
        Self {
            scale: Self::INITIAL,
            good_steps: 0,
            skipped_steps: 0,
        }
    }
}

impl LossScale {
    /// The first scale: 2^16, PyTorch's `init_scale`.
    pub const INITIAL: f32 = 65_536.0;
    /// Good steps in a row after which the scale doubles: PyTorch's `growth_interval` and
    /// Keras's `dynamic_growth_steps`.
    pub const GROWTH_INTERVAL: u32 = 2000;

    /// Records an optimiser step whose gradients were `finite` or not, and says whether to
    /// apply it: a step that overflowed is skipped and halves the scale; the
    /// [`GROWTH_INTERVAL`](Self::GROWTH_INTERVAL)th good step in a row doubles it.
    pub fn update(&mut self, finite: bool) -> bool {
        if finite {
            self.good_steps += 1;
            if self.good_steps >= Self::GROWTH_INTERVAL {
                let grown = self.scale * 2.0;
                if grown.is_finite() {
                    self.scale = grown;
                }
                self.good_steps = 0;
            }
        } else {
            // Never to zero: a zero scale would turn every gradient into 0 / 0.
            self.scale = (self.scale * 0.5).max(f32::MIN_POSITIVE);
            self.good_steps = 0;
            self.skipped_steps += 1;
        }
        finite
    }
}

/// A run's [`LossScale`], shared by its training steps (which scale the loss by it) and its
/// training loop (which updates it once per optimiser step).
#[derive(Debug, Default)]
pub struct LossScaler {
    state: Mutex<LossScale>,
}

impl LossScaler {
    /// A scaler starting from `state` (a resumed run's, or [`LossScale::default`]).
    pub fn new(state: LossScale) -> Self {
        Self {
            state: Mutex::new(state),
        }
    }

    /// The state now.
    pub fn state(&self) -> LossScale {
        *self.state.lock().expect("loss scale lock")
    }

    /// The factor the loss is multiplied by now.
    pub fn scale(&self) -> f32 {
        self.state().scale
    }

    /// The gradients `grads` of `model` for an optimiser step, or `None` when the step is to be
    /// skipped because one of them is not finite; the scale is updated either way. Reads one
    /// value back from the device.
    pub fn check<M: Module>(&self, model: &M, grads: GradientsParams) -> Option<GradientsParams> {
        let finite = all_finite(model, &grads);
        self.state
            .lock()
            .expect("loss scale lock")
            .update(finite)
            .then_some(grads)
    }
}

/// `grads` of `model`'s parameters multiplied by `factor` (the loss scale's inverse).
pub(crate) fn rescaled<M: Module>(
    model: &M,
    grads: GradientsParams,
    factor: f32,
) -> GradientsParams {
    struct Rescale {
        grads: GradientsParams,
        factor: f32,
    }
    impl ModuleVisitor for Rescale {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, grad * self.factor);
            }
        }
    }
    let mut visitor = Rescale { grads, factor };
    model.visit(&mut visitor);
    visitor.grads
}

/// Whether every value of every gradient in `grads` is finite.
fn all_finite<M: Module>(model: &M, grads: &GradientsParams) -> bool {
    struct Finite<'a> {
        grads: &'a GradientsParams,
        each: Vec<Tensor<1, Bool>>,
    }
    impl ModuleVisitor for Finite<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.grads.get::<D>(param.id) {
                self.each.push(grad.is_finite().all());
            }
        }
    }
    let mut visitor = Finite {
        grads,
        each: Vec::new(),
    };
    model.visit(&mut visitor);
    match visitor.each.len() {
        0 => true,
        _ => Tensor::cat(visitor.each, 0).all().into_scalar::<bool>(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;

    #[test]
    fn the_scale_halves_on_overflow_and_doubles_after_the_growth_interval() {
        let mut s = LossScale::default();
        assert_eq!(s.scale, 65_536.0);
        assert!(!s.update(false));
        assert_eq!((s.scale, s.good_steps, s.skipped_steps), (32_768.0, 0, 1));
        for _ in 0..LossScale::GROWTH_INTERVAL - 1 {
            assert!(s.update(true));
        }
        assert_eq!((s.scale, s.good_steps), (32_768.0, 1999));
        assert!(s.update(true));
        assert_eq!((s.scale, s.good_steps, s.skipped_steps), (65_536.0, 0, 1));
        // An overflow restarts the count of good steps.
        for _ in 0..1500 {
            s.update(true);
        }
        s.update(false);
        for _ in 0..1999 {
            s.update(true);
        }
        assert_eq!(
            (s.scale, s.good_steps, s.skipped_steps),
            (32_768.0, 1999, 2)
        );
        // Neither to zero nor to infinity.
        let mut tiny = LossScale {
            scale: f32::MIN_POSITIVE,
            ..s
        };
        tiny.update(false);
        assert_eq!(tiny.scale, f32::MIN_POSITIVE);
        let mut huge = LossScale {
            scale: f32::MAX,
            good_steps: 1999,
            ..s
        };
        huge.update(true);
        assert_eq!(huge.scale, f32::MAX);
    }

    fn grads_of(linear: &Linear, x: Tensor<2>, factor: f32) -> GradientsParams {
        let loss = linear.forward(x).sum() * factor;
        GradientsParams::from_grads(loss.backward(), linear)
    }

    #[test]
    fn rescaled_gradients_are_the_unscaled_ones_and_overflow_skips_the_step() {
        let device = Device::flex().autodiff();
        let linear = LinearConfig::new(3, 2).init(&device);
        let x = Tensor::<2>::from_floats([[1.0, -2.0, 0.5], [0.25, 3.0, -1.0]], &device);
        let plain = grads_of(&linear, x.clone(), 1.0);
        let scaled = rescaled(&linear, grads_of(&linear, x.clone(), 1024.0), 1.0 / 1024.0);
        let id = linear.weight.id;
        assert_eq!(
            plain.get::<2>(id).unwrap().into_data(),
            scaled.get::<2>(id).unwrap().into_data(),
            "a power of two scales and unscales exactly"
        );
        let scaler = LossScaler::default();
        assert!(scaler.check(&linear, scaled).is_some());
        assert_eq!(scaler.state().good_steps, 1);
        let overflowed = grads_of(&linear, x, f32::MAX);
        assert!(scaler.check(&linear, overflowed).is_none());
        assert_eq!(
            scaler.state(),
            LossScale {
                scale: 32_768.0,
                good_steps: 0,
                skipped_steps: 1
            }
        );
    }
}
