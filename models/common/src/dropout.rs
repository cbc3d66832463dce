use crate::kernel::on_host;
use burn::config::Config;
use burn::module::{Content, DisplaySettings, Flag, Module, ModuleDisplay, Param};
use burn::tensor::{DType, Device, Distribution, Tensor, TensorData};

/// Configuration of a [`Dropout`] layer.
///
/// # Example
///
/// ```
/// use burn::module::Module;
/// use burn::tensor::{Device, Tensor};
/// use kiln_common::DropoutConfig;
///
/// let device = Device::flex();
/// let dropout = DropoutConfig::new(0.5).init();
/// let x = Tensor::<2>::ones([4, 1000], &device);
/// // Training: about half the elements are zeroed, the rest doubled.
/// let kept: f32 = dropout.forward(x.clone()).mean().into_scalar();
/// assert!((kept - 1.0).abs() < 0.1);
/// // Evaluation: the identity.
/// let same: Vec<f32> = dropout.valid().forward(x).into_data().try_to_vec().unwrap();
/// assert!(same.iter().all(|&v| v == 1.0));
/// ```
#[derive(Config, Debug)]
pub struct DropoutConfig {
    /// Probability of zeroing each element during training; in `[0, 1)`.
    pub prob: f64,
}

impl DropoutConfig {
    /// A dropout layer, in training mode.
    ///
    /// # Panics
    /// If `prob` is not in `[0, 1)` (the model configs check it into a typed error first).
    pub fn init(&self) -> Dropout {
        assert!(
            self.prob.is_finite() && (0.0..1.0).contains(&self.prob),
            "dropout probability must lie in [0, 1), got {}",
            self.prob
        );
        Dropout {
            prob: self.prob,
            training: Param::from_bool(true),
        }
    }
}

/// Zeroes each element with probability `prob` during training and scales the others by
/// `1 / (1 - prob)`, so that the expected value is unchanged; the identity in evaluation.
///
/// The same layer as `burn::nn::Dropout` (same fields, same train/eval switch), with a faster mask
/// on the CPU backends. Burn draws each element of the mask through ChaCha and a fresh Bernoulli
/// sampler: profiled on a transformer's training step (flex, 2 cores), that was 27% of the time,
/// mostly the attention weights' mask. Here, on flex and ndarray, the mask is a counter-based hash
/// of each element's index, keyed by a seed drawn from the backend's random generator (so
/// `--seed` still decides every mask), computed in one vectorisable pass. Other devices (wgpu)
/// draw the mask with Burn's own random tensor, on the device.
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct Dropout {
    /// Probability of zeroing each element during training.
    pub prob: f64,
    /// Whether the layer behaves as in training; cleared by Burn's `valid()` and `freeze`.
    pub training: Param<Flag>,
}

impl Dropout {
    /// Applies dropout when training on an autodiff device; returns `input` unchanged otherwise.
    ///
    /// # Shapes
    /// - input: `[..., any]`
    /// - output: same as input
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        let device = input.device();
        if !self.is_active(&device) {
            return input;
        }
        let keep = 1.0 - self.prob;
        if input.dtype() == DType::F32 && on_host(&device) {
            let draw = DropoutDraw {
                keep,
                seed: draw_seed(&device),
            };
            let mask = TensorData::new(draw.mask(input.shape().num_elements()), input.shape());
            input * Tensor::from_data(mask, &device)
        } else {
            let mask = input.random_like(Distribution::Bernoulli(keep));
            input * mask * (1.0 / keep)
        }
    }
}

impl Dropout {
    /// Whether the layer drops anything on `device`: in training, on an autodiff device, with
    /// a probability above 0.
    fn is_active(&self, device: &Device) -> bool {
        self.training.is_enabled() && device.is_autodiff() && self.prob > 0.0
    }

    /// The mask's draw for one call on a CPU backend, or `None` where the layer keeps every
    /// value: what a fused kernel needs to apply this layer's dropout itself, with the mask
    /// [`forward`](Self::forward) would have drawn at this point of the random stream.
    pub fn draw(&self, device: &Device) -> Option<DropoutDraw> {
        self.is_active(device).then(|| DropoutDraw {
            keep: 1.0 - self.prob,
            seed: draw_seed(device),
        })
    }
}

/// One dropout mask, drawn but not yet built: a fused CPU kernel's dropout argument.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DropoutDraw {
    /// Probability of keeping each element, in `(0, 1]`.
    pub keep: f64,
    /// The key of the mask's hash.
    pub seed: u64,
}

impl DropoutDraw {
    /// The mask of `n` elements: `1 / keep` with probability `keep`, else 0.
    pub fn mask(&self, n: usize) -> Vec<f32> {
        host_mask(n, self.keep, self.seed)
    }

    /// Element `i` of every [`mask`](Self::mask) longer than `i`: for a kernel that applies
    /// the mask tile by tile without building it.
    #[inline(always)]
    pub fn value_at(&self, i: usize) -> f32 {
        let block = (i as u64 >> 32) as u32;
        let key = [
            self.seed as u32,
            (self.seed >> 32) as u32 ^ block.wrapping_mul(0x9E37_79B9),
        ];
        let threshold = (self.keep * 4_294_967_296.0).min(u32::MAX as f64) as u32;
        let r = mix32(mix32(i as u32 ^ key[0]) ^ key[1]);
        if r < threshold {
            (1.0 / self.keep) as f32
        } else {
            0.0
        }
    }
}

impl ModuleDisplay for Dropout {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        DisplaySettings::new()
            .with_new_line_after_attribute(false)
            .optional()
    }

    fn custom_content(&self, content: Content) -> Option<Content> {
        content.add("prob", &self.prob).optional()
    }
}

/// 48 random bits from the backend's seeded generator: two uniform f32 draws carry 24 each.
fn draw_seed(device: &Device) -> u64 {
    let draws = Tensor::<1>::random([2], Distribution::Default, device)
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32 draws");
    let bits = |u: f32| ((u * (1u32 << 24) as f32) as u64) & 0xFF_FFFF;
    bits(draws[0]) << 24 | bits(draws[1])
}

/// The mask of `n` elements: `1 / keep` with probability `keep`, else 0. Element `i` keeps when
/// a hash of `(i, seed)` falls below `keep * 2^32`.
fn host_mask(n: usize, keep: f64, seed: u64) -> Vec<f32> {
    let threshold = (keep * 4_294_967_296.0).min(u32::MAX as f64) as u32;
    let scale = (1.0 / keep) as f32;
    let mut mask = vec![0.0; n];
    // Element indices are hashed as 32 bits; beyond 2^32 elements, each further block of 2^32
    // gets its own key.
    let block_len = usize::try_from(1u64 << 32).unwrap_or(usize::MAX);
    for (block, chunk) in mask.chunks_mut(block_len).enumerate() {
        let key = [
            seed as u32,
            (seed >> 32) as u32 ^ (block as u32).wrapping_mul(0x9E37_79B9),
        ];
        fill_mask(chunk, key, threshold, scale);
    }
    mask
}

crate::vectorised!(fill_mask(mask: &mut [f32], key: [u32; 2], threshold: u32, scale: f32) {
    for (i, m) in mask.iter_mut().enumerate() {
        let r = mix32(mix32(i as u32 ^ key[0]) ^ key[1]);
        *m = if r < threshold { scale } else { 0.0 };
    }
});

/// A 32-bit integer hash with low bias (Wellons' `lowbias32`): every input bit affects every
/// output bit; 32-bit multiplies, so the loop vectorises.
#[inline(always)]
fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Tolerance;

    fn training_device() -> Device {
        Device::default().autodiff()
    }

    fn mask_of(dropout: &Dropout, n: usize, device: &Device) -> Vec<f32> {
        dropout
            .forward(Tensor::<1>::ones([n], device))
            .into_data()
            .try_to_vec()
            .unwrap()
    }

    #[test]
    fn value_at_reads_the_mask_element_by_element() {
        let draw = DropoutDraw {
            keep: 0.7,
            seed: 0x1234_5678_9abc,
        };
        let mask = draw.mask(5000);
        for (i, &m) in mask.iter().enumerate() {
            assert_eq!(draw.value_at(i), m, "element {i}");
        }
        let kept = mask.iter().filter(|&&m| m > 0.0).count() as f64 / 5000.0;
        assert!((kept - 0.7).abs() < 0.03, "{kept}");
    }

    #[test]
    fn drops_the_given_fraction_and_rescales_the_rest() {
        let device = training_device();
        let dropout = DropoutConfig::new(0.3).init();
        let n = 200_000;
        let mask = mask_of(&dropout, n, &device);
        let kept = mask.iter().filter(|&&m| m != 0.0).count();
        // Binomial(n, 0.7): standard deviation about 205; 5 of them.
        assert!(
            (kept as f64 - 0.7 * n as f64).abs() < 1_025.0,
            "kept {kept}"
        );
        assert!(
            mask.iter()
                .all(|&m| m == 0.0 || (m - 1.0 / 0.7).abs() < 1e-6)
        );
    }

    #[test]
    fn neighbouring_elements_are_independent() {
        let device = training_device();
        let mask = mask_of(&DropoutConfig::new(0.5).init(), 200_000, &device);
        let both = mask
            .windows(2)
            .filter(|w| w[0] != 0.0 && w[1] != 0.0)
            .count() as f64;
        let expected = 0.25 * (mask.len() - 1) as f64;
        assert!(
            (both - expected).abs() < 5.0 * (expected * 0.75).sqrt(),
            "{both}"
        );
    }

    // That the seed repeats the masks is tested in `tests/dropout_seed.rs`, a process of its own.

    #[test]
    fn gradient_is_the_mask() {
        let device = training_device();
        let dropout = DropoutConfig::new(0.4).init();
        let x = Tensor::<2>::ones([50, 40], &device).require_grad();
        let y = dropout.forward(x.clone());
        let grads = y.clone().sum().backward();
        let grad = x.grad(&grads).unwrap();
        grad.into_data()
            .assert_approx_eq::<f32>(&y.into_data(), Tolerance::default());
    }

    #[test]
    fn identity_in_evaluation_and_without_autodiff() {
        let dropout = DropoutConfig::new(0.5).init();
        let x = Tensor::<2>::ones([8, 8], &Device::default());
        assert_eq!(dropout.forward(x.clone()).into_data(), x.into_data());
        let frozen = dropout.valid();
        let x = Tensor::<2>::ones([8, 8], &training_device());
        assert_eq!(frozen.forward(x.clone()).into_data(), x.into_data());
    }

    #[test]
    #[should_panic(expected = "dropout probability must lie in [0, 1)")]
    fn rejects_a_probability_of_one() {
        DropoutConfig::new(1.0).init();
    }
}
