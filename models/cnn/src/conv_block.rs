use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use kiln_common::{Activation, Dropout, DropoutConfig, Layer};

use crate::fused;

/// How a convolution treats the image border.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Zero-pad so that the output has the input's size (stride 1).
    Same,
    /// No padding: the output shrinks by `kernel_size - 1`.
    Valid,
}

/// Spatial pooling after the activation.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Pool {
    /// The maximum of each window.
    Max,
    /// The mean of each window.
    Avg,
}

/// One convolutional block:
///
/// ```text
/// conv(kernel, stride, padding) -> (batch norm) -> activation -> (pool) -> (dropout)
/// ```
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use kiln_cnn::{ConvBlockConfig, Padding, Pool};
///
/// let device = Device::flex();
/// let block = ConvBlockConfig::new([1, 8])
///     .with_padding(Padding::Same)
///     .with_pool(Some(Pool::Max))
///     .init(&device);
/// let features = block.forward(Tensor::zeros([2, 1, 28, 28], &device));
/// assert_eq!(features.dims(), [2, 8, 14, 14]);
/// ```
#[derive(Config, Debug)]
pub struct ConvBlockConfig {
    /// Input and output channels.
    pub channels: [usize; 2],
    /// Square kernel side. Default: 3.
    #[config(default = 3)]
    pub kernel_size: usize,
    /// Convolution stride. Default: 1.
    #[config(default = 1)]
    pub stride: usize,
    /// Default: valid (no padding).
    #[config(default = "Padding::Valid")]
    pub padding: Padding,
    /// Batch normalisation after the convolution. Default: off.
    #[config(default = false)]
    pub batch_norm: bool,
    /// Default: ReLU.
    #[config(default = "Activation::Relu")]
    pub activation: Activation,
    /// Pooling, with a square window of `pool_size` and the same stride. Default: none.
    #[config(default = "None")]
    pub pool: Option<Pool>,
    /// Default: 2.
    #[config(default = 2)]
    pub pool_size: usize,
    /// Dropout probability at the end of the block. Default: 0.
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl ConvBlockConfig {
    /// The block's output size `[height, width]` for an input of `size`; a side of 0 means the
    /// block shrinks the image to nothing.
    pub fn output_size(&self, size: [usize; 2]) -> [usize; 2] {
        size.map(|side| {
            let conv = match self.padding {
                Padding::Same => side.div_ceil(self.stride),
                Padding::Valid if side < self.kernel_size => 0,
                Padding::Valid => (side - self.kernel_size) / self.stride + 1,
            };
            match self.pool {
                Some(_) => conv / self.pool_size.max(1),
                None => conv,
            }
        })
    }

    /// A block with freshly initialised weights on `device`.
    pub fn init(&self, device: &Device) -> ConvBlock {
        let k = self.kernel_size;
        let padding = match self.padding {
            // Odd kernels pad evenly; even kernels put the extra row and column after.
            Padding::Same => PaddingConfig2d::Explicit((k - 1) / 2, (k - 1) / 2, k / 2, k / 2),
            Padding::Valid => PaddingConfig2d::Valid,
        };
        let window = [self.pool_size, self.pool_size];
        ConvBlock {
            conv: Conv2dConfig::new(self.channels, [k, k])
                .with_stride([self.stride, self.stride])
                .with_padding(padding)
                .init(device),
            norm: self
                .batch_norm
                .then(|| BatchNormConfig::new(self.channels[1]).init(device)),
            activation: self.activation,
            max_pool: (self.pool == Some(Pool::Max)).then(|| MaxPool2dConfig::new(window).init()),
            avg_pool: (self.pool == Some(Pool::Avg)).then(|| AvgPool2dConfig::new(window).init()),
            dropout: DropoutConfig::new(self.dropout).init(),
        }
    }
}

/// A convolutional block; see [`ConvBlockConfig`].
#[derive(Module, Debug)]
pub struct ConvBlock {
    /// The convolution.
    pub conv: Conv2d,
    /// Batch normalisation, if configured.
    pub norm: Option<BatchNorm>,
    #[module(skip)]
    /// The activation after the convolution (and normalisation).
    pub activation: Activation,
    /// Max pooling, if configured.
    pub max_pool: Option<MaxPool2d>,
    /// Average pooling, if configured.
    pub avg_pool: Option<AvgPool2d>,
    /// Dropout at the end of the block.
    pub dropout: Dropout,
}

impl ConvBlock {
    /// # Shapes
    /// - x: `[batch, channels_in, height, width]`
    /// - output: `[batch, channels_out, height', width']`, as
    ///   [`ConvBlockConfig::output_size`] gives
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let relu = self.activation == Activation::Relu;
        let x = match (&self.norm, fused::applies_to(&self.conv, &x)) {
            // The convolution, its bias, a ReLU and the max-pool after it in one operation on
            // the CPU backends.
            (None, Some(padding)) if relu => {
                if let Some(pool) = self.max_pool.as_ref().filter(|p| fused::pool_applies(p)) {
                    let x = fused::conv2d_bias_relu(&self.conv, x, padding, true, Some(pool));
                    return self.dropout.forward(x);
                }
                fused::conv2d_bias_relu(&self.conv, x, padding, true, None)
            }
            (None, Some(padding)) => {
                let x = fused::conv2d_bias_relu(&self.conv, x, padding, false, None);
                self.activation.forward(x)
            }
            // The convolution alone fused (in the run's precision), the normalisation between
            // it and the activation.
            (Some(norm), Some(padding)) => {
                let x = fused::conv2d_bias_relu(&self.conv, x, padding, false, None);
                self.activation.forward(norm.forward(x))
            }
            (Some(norm), None) => self
                .activation
                .forward(norm.forward(kiln_common::autocast::conv2d(&self.conv, x))),
            (None, None) => self
                .activation
                .forward(kiln_common::autocast::conv2d(&self.conv, x)),
        };
        let x = match (&self.max_pool, &self.avg_pool) {
            (Some(pool), _) => pool.forward(x),
            (_, Some(pool)) => pool.forward(x),
            _ => x,
        };
        self.dropout.forward(x)
    }
}

impl ConvBlock {
    /// The block's output for `x` in inference mode, and what its activation received, one
    /// column per channel.
    ///
    /// # Shapes
    /// - x: `[batch, channels_in, height, width]`
    /// - output: `[batch, channels_out, height', width']`, and the pre-activations
    ///   `[batch * height_conv * width_conv, channels_out]`
    pub fn activations(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<2>) {
        let pre = self.conv.forward(x);
        let pre = match &self.norm {
            Some(norm) => norm.forward(pre),
            None => pre,
        };
        let [batch, channels, height, width] = pre.dims();
        let columns = pre
            .clone()
            .permute([0, 2, 3, 1])
            .reshape([batch * height * width, channels]);
        let x = self.activation.forward(pre);
        let x = match (&self.max_pool, &self.avg_pool) {
            (Some(pool), _) => pool.forward(x),
            (_, Some(pool)) => pool.forward(x),
            _ => x,
        };
        (x, columns)
    }

    /// The block's rows in a model summary, for the input `x` (one sample), and its output.
    pub fn layers(&self, x: Tensor<4>) -> (Tensor<4>, Vec<Layer>) {
        let [_, _, kh, kw] = self.conv.weight.dims();
        let x = self.conv.forward(x);
        let mut rows = vec![Layer::new(
            "conv",
            format!("Conv2d {kh}x{kw}, {}", self.activation.name()),
            &self.conv,
            &x,
        )];
        let x = match &self.norm {
            Some(norm) => {
                let x = norm.forward(x);
                rows.push(Layer::new("norm", "BatchNorm", norm, &x));
                x
            }
            None => x,
        };
        // Pools have no parameters: one row shape for either kind.
        let pooled = match (&self.max_pool, &self.avg_pool) {
            (Some(pool), _) => Some((
                pool.forward(x.clone()),
                "max_pool",
                "MaxPool2d",
                pool.kernel_size,
            )),
            (_, Some(pool)) => Some((
                pool.forward(x.clone()),
                "avg_pool",
                "AvgPool2d",
                pool.kernel_size,
            )),
            _ => None,
        };
        let x = match pooled {
            Some((x, name, kind, [ph, pw])) => {
                let kind = format!("{kind} {ph}x{pw}");
                rows.push(Layer::shaped(name, kind, 0, x.dims()[1..].to_vec()));
                x
            }
            None => x,
        };
        if self.dropout.prob > 0.0 {
            rows.push(Layer::new(
                "dropout",
                format!("Dropout {}", self.dropout.prob),
                &self.dropout,
                &x,
            ));
        }
        (x, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn output_size_matches_the_forward_pass() {
        let device = Device::flex();
        let cases = [
            ConvBlockConfig::new([1, 4]),
            ConvBlockConfig::new([1, 4]).with_padding(Padding::Same),
            ConvBlockConfig::new([1, 4])
                .with_padding(Padding::Same)
                .with_kernel_size(4),
            ConvBlockConfig::new([1, 4]).with_pool(Some(Pool::Max)),
            ConvBlockConfig::new([1, 4])
                .with_stride(2)
                .with_pool(Some(Pool::Avg)),
            ConvBlockConfig::new([1, 4])
                .with_kernel_size(5)
                .with_batch_norm(true),
        ];
        for config in cases {
            let x = Tensor::<4>::random([2, 1, 13, 10], Distribution::Default, &device);
            let y = config.init(&device).forward(x);
            let [h, w] = config.output_size([13, 10]);
            assert_eq!(y.dims(), [2, 4, h, w], "{config:?}");
        }
    }

    #[test]
    fn a_valid_kernel_larger_than_the_image_leaves_nothing() {
        assert_eq!(
            ConvBlockConfig::new([1, 1])
                .with_kernel_size(5)
                .output_size([4, 9]),
            [0, 5]
        );
    }
}
