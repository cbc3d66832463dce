use std::fmt;
use std::str::FromStr;

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use kiln_common::{Activation, Layer, LayerActivations, Model};
use kiln_fnn::{Mlp, MlpConfig};

use crate::conv_block::{ConvBlock, ConvBlockConfig, Padding, Pool};

/// A hyper-parameter of [`CnnConfig`] that cannot work, found by [`CnnConfig::check`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CnnConfigError {
    #[error("the network needs at least one conv block")]
    /// The network has no convolutional block.
    NoBlocks,
    #[error("block {block} takes {got} input channels but receives {expected}")]
    /// A block's input channels differ from the previous block's output.
    Channels {
        /// The block (from 0).
        block: usize,
        /// Channels arriving.
        expected: usize,
        /// Channels the block takes.
        got: usize,
    },
    #[error(
        "block {block} shrinks the image to nothing: {input:?} in, {output:?} out \
         (use smaller kernels, `same` padding, fewer pools, or a larger image)"
    )]
    /// A block shrinks the image to nothing.
    ImageVanishes {
        /// The block (from 0).
        block: usize,
        /// Image size into it.
        input: [usize; 2],
        /// Image size out of it.
        output: [usize; 2],
    },
    /// A block's own configuration cannot work.
    #[error("block {block}: {reason}")]
    Block {
        /// The block (from 0).
        block: usize,
        /// What is wrong with it.
        reason: String,
    },
    #[error("head: {0}")]
    /// The dense head's configuration cannot work.
    Head(#[from] kiln_fnn::MlpConfigError),
}

/// A small image classifier:
///
/// ```text
/// image -> ConvBlock x blocks.len() -> flatten -> dense head (Mlp) -> d_output logits
/// ```
///
/// The flatten size is computed from `image_size` and the blocks, never written by hand.
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use kiln_cnn::{CnnConfig, ConvBlockConfig, Pool};
///
/// let device = Device::flex();
/// let config = CnnConfig::new(
///     1,
///     [28, 28],
///     vec![
///         ConvBlockConfig::new([1, 16]).with_pool(Some(Pool::Max)),
///         ConvBlockConfig::new([16, 32]).with_pool(Some(Pool::Max)),
///     ],
///     vec![64],
///     10,
/// );
/// config.check()?;
/// let cnn = config.init(&device);
/// assert_eq!(cnn.forward(Tensor::zeros([2, 1, 28, 28], &device)).dims(), [2, 10]);
/// # Ok::<(), kiln_cnn::CnnConfigError>(())
/// ```
#[derive(Config, Debug)]
pub struct CnnConfig {
    /// Channels of the input image (1 grey, 3 colour).
    pub in_channels: usize,
    /// `[height, width]` of the input image.
    pub image_size: [usize; 2],
    /// The convolutional blocks, first to last.
    pub blocks: Vec<ConvBlockConfig>,
    /// Hidden widths of the dense head.
    pub head: Vec<usize>,
    /// Number of outputs (classes).
    pub d_output: usize,
    /// Dropout in the dense head. Default: 0.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Activation of the dense head. Default: ReLU.
    #[config(default = "Activation::Relu")]
    pub activation: Activation,
    /// Average each channel of the last block's output over its height and width before the
    /// head (Keras's `GlobalAveragePooling2D`): the head reads one value per channel, so the
    /// same head suits any image size. Default: false (the head reads every value, flattened).
    #[config(default = false)]
    pub global_pool: bool,
}

impl CnnConfig {
    /// Checks the blocks chain up (channels and image size) and the head is valid.
    pub fn check(&self) -> Result<(), CnnConfigError> {
        if self.blocks.is_empty() {
            return Err(CnnConfigError::NoBlocks);
        }
        let mut channels = self.in_channels;
        let mut size = self.image_size;
        for (block, b) in self.blocks.iter().enumerate() {
            if b.channels[0] != channels {
                return Err(CnnConfigError::Channels {
                    block,
                    expected: channels,
                    got: b.channels[0],
                });
            }
            let reason = if b.channels[1] == 0 || b.kernel_size == 0 || b.stride == 0 {
                Some("channels, kernel_size and stride must be at least 1".to_string())
            } else if b.padding == Padding::Same && b.stride != 1 {
                Some("`same` padding needs stride 1".to_string())
            } else if b.pool.is_some() && b.pool_size == 0 {
                Some("pool_size must be at least 1".to_string())
            } else if !(0.0..1.0).contains(&b.dropout) {
                Some(format!("dropout must lie in [0, 1), got {}", b.dropout))
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(CnnConfigError::Block { block, reason });
            }
            let output = b.output_size(size);
            if output.contains(&0) {
                return Err(CnnConfigError::ImageVanishes {
                    block,
                    input: size,
                    output,
                });
            }
            channels = b.channels[1];
            size = output;
        }
        self.head_config().check()?;
        Ok(())
    }

    /// `(channels, [height, width])` after the last block.
    pub fn feature_shape(&self) -> (usize, [usize; 2]) {
        let size = self
            .blocks
            .iter()
            .fold(self.image_size, |s, b| b.output_size(s));
        let channels = self
            .blocks
            .last()
            .map_or(self.in_channels, |b| b.channels[1]);
        (channels, size)
    }

    /// Number of features the head receives: channels x height x width after the last block,
    /// or the channels alone with [`global_pool`](Self::global_pool).
    pub fn flatten_size(&self) -> usize {
        let (c, [h, w]) = self.feature_shape();
        if self.global_pool { c } else { c * h * w }
    }

    fn head_config(&self) -> MlpConfig {
        MlpConfig::new(self.flatten_size(), self.head.clone(), self.d_output)
            .with_activation(self.activation)
            .with_dropout(self.dropout)
    }

    /// Builds the network.
    ///
    /// # Panics
    /// If [`check`](Self::check) fails; call it first to get the error as a value.
    pub fn init(&self, device: &Device) -> Cnn {
        if let Err(e) = self.check() {
            panic!("invalid CnnConfig: {e}");
        }
        Cnn {
            blocks: self.blocks.iter().map(|b| b.init(device)).collect(),
            head: self.head_config().init(device),
            global_pool: self.global_pool,
        }
    }

    /// A preset architecture for `d_output` classes.
    pub fn preset(preset: Preset, d_output: usize) -> Self {
        let block = |c_in, c_out| ConvBlockConfig::new([c_in, c_out]).with_pool(Some(Pool::Max));
        match preset {
            Preset::Digits => {
                let same = |c_in, c_out| block(c_in, c_out).with_padding(Padding::Same);
                CnnConfig::new(
                    1,
                    [8, 8],
                    vec![same(1, 32), same(32, 64)],
                    vec![128],
                    d_output,
                )
            }
            Preset::Mnist => CnnConfig::new(
                1,
                [28, 28],
                vec![block(1, 32), block(32, 64)],
                vec![128],
                d_output,
            ),
            Preset::Cifar => CnnConfig::new(
                3,
                [32, 32],
                vec![block(3, 32), block(32, 64)],
                vec![128],
                d_output,
            ),
            Preset::CifarBn => {
                // VGG-style: two `same` 3x3 convs with batch norm per stage, then pool and
                // dropout; three stages 32 -> 16 -> 8 -> 4.
                let conv = |c_in, c_out| {
                    ConvBlockConfig::new([c_in, c_out])
                        .with_padding(Padding::Same)
                        .with_batch_norm(true)
                };
                let end = |c_in, c_out, dropout| {
                    conv(c_in, c_out)
                        .with_pool(Some(Pool::Max))
                        .with_dropout(dropout)
                };
                let blocks = vec![
                    conv(3, 32),
                    end(32, 32, 0.2),
                    conv(32, 64),
                    end(64, 64, 0.3),
                    conv(64, 128),
                    end(128, 128, 0.4),
                ];
                CnnConfig::new(3, [32, 32], blocks, vec![128], d_output).with_dropout(0.5)
            }
        }
    }
}

/// Named architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// 1x8x8 (the embedded digits): conv 1->32 3x3 `same`, max pool to 4x4, conv 32->64 3x3
    /// `same`, max pool to 2x2, dense 128.
    Digits,
    /// 1x28x28: conv 1->32 3x3, max pool, conv 32->64 3x3, max pool, dense 128 (the Keras and
    /// PyTorch MNIST tutorial net).
    Mnist,
    /// 3x32x32: conv 3->32, pool, conv 32->64, pool, dense 128.
    Cifar,
    /// 3x32x32: three VGG-style stages with batch norm and dropout.
    CifarBn,
}

impl Preset {
    /// Every preset.
    pub const ALL: [Preset; 4] = [
        Preset::Digits,
        Preset::Mnist,
        Preset::Cifar,
        Preset::CifarBn,
    ];

    /// The preset made for images of `shape` (`[channels, height, width]`): digits for
    /// 1x8x8, mnist for 1x28x28, cifar for 3x32x32.
    pub fn for_images(shape: &[usize]) -> Option<Preset> {
        match shape {
            [1, 8, 8] => Some(Preset::Digits),
            [1, 28, 28] => Some(Preset::Mnist),
            [3, 32, 32] => Some(Preset::Cifar),
            _ => None,
        }
    }

    /// The preset's name as the CLI spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Preset::Digits => "digits",
            Preset::Mnist => "mnist",
            Preset::Cifar => "cifar",
            Preset::CifarBn => "cifar-bn",
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown preset `{s}` (valid: digits, mnist, cifar, cifar-bn)"))
    }
}

/// A convolutional image classifier; see [`CnnConfig`].
#[derive(Module, Debug)]
pub struct Cnn {
    /// The convolutional blocks, in order.
    pub blocks: Vec<ConvBlock>,
    /// The dense head on the flattened features.
    pub head: Mlp,
    /// Whether the features are averaged over height and width before the head.
    #[module(skip)]
    pub global_pool: bool,
}

impl Cnn {
    /// # Shapes
    /// - images: `[batch, in_channels, height, width]`
    /// - output: `[batch, d_output]`
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let features = self.blocks.iter().fold(images, |x, block| block.forward(x));
        self.head.forward(self.head_input(features))
    }

    /// The last block's output as the head reads it: flattened, or averaged per channel.
    ///
    /// # Shapes
    /// - features: `[batch, channels, height, width]`
    /// - output: `[batch, channels * height * width]`, or `[batch, channels]` pooled
    fn head_input(&self, features: Tensor<4>) -> Tensor<2> {
        match self.global_pool {
            true => features.mean_dim(3).mean_dim(2).flatten(1, 3),
            false => features.flatten(1, 3),
        }
    }
}

impl Model for Cnn {
    type Input = Tensor<4>;

    fn forward(&self, input: Tensor<4>) -> Tensor<2> {
        Cnn::forward(self, input)
    }

    /// Each convolutional block's pre-activations (`blocks.0`, ..., one column per channel),
    /// then the dense head's (`head.hidden.0`, ...).
    fn activations(&self, input: Tensor<4>) -> Vec<LayerActivations> {
        let mut layers = Vec::new();
        let mut x = input;
        for (i, block) in self.blocks.iter().enumerate() {
            let (out, pre) = block.activations(x);
            layers.push(LayerActivations {
                layer: format!("blocks.{i}"),
                activation: block.activation,
                pre,
            });
            x = out;
        }
        let (_, head) = self.head.hidden_activations(self.head_input(x));
        layers.extend(head.into_iter().map(|l| l.within("head")));
        layers
    }

    fn layers(&self, sample_shape: &[usize]) -> Vec<Layer> {
        let model = self.valid();
        let mut shape = [1, 1, 1, 1];
        let n = sample_shape.len().min(3);
        shape[4 - n..].copy_from_slice(&sample_shape[sample_shape.len() - n..]);
        let mut x = Tensor::<4>::zeros(shape, &model.head.output.weight.device());
        let mut rows = Vec::new();
        for (i, block) in model.blocks.iter().enumerate() {
            let (out, block_rows) = block.layers(x);
            x = out;
            let prefix = format!("blocks.{i}");
            rows.extend(block_rows.into_iter().map(|r| r.within(&prefix)));
        }
        let flat = model.head_input(x);
        let (name, kind) = match model.global_pool {
            true => ("global_pool", "GlobalAveragePooling2D"),
            false => ("flatten", "Flatten"),
        };
        rows.push(Layer::shaped(name, kind, 0, vec![flat.dims()[1]]));
        rows.extend(
            model
                .head
                .layers_from(flat)
                .into_iter()
                .map(|r| r.within("head")),
        );
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::tensor::Distribution;

    /// The probe's path (unfused) ends where the fused forward pass does, and names a column
    /// per channel for every convolution.
    #[test]
    fn activations_follow_the_fused_forward_pass() {
        let device = Device::flex();
        let cnn = CnnConfig::preset(Preset::Digits, 10).init(&device);
        let images = Tensor::<4>::random([3, 1, 8, 8], Distribution::Default, &device);
        let layers = Model::activations(&cnn, images.clone());
        let names: Vec<&str> = layers.iter().map(|l| l.layer.as_str()).collect();
        assert_eq!(names, ["blocks.0", "blocks.1", "head.hidden.0"]);
        let channels = cnn.blocks[0].conv.weight.dims()[0];
        assert_eq!(layers[0].pre.dims(), [3 * 8 * 8, channels], "{:?}", cnn);
        let mut x = images.clone();
        for block in &cnn.blocks {
            x = block.activations(x).0;
        }
        let (last, _) = cnn.head.hidden_activations(x.flatten(1, 3));
        let out = cnn.head.output.forward(last);
        let gap: f32 = (out - cnn.forward(images)).abs().max().into_scalar();
        assert!(gap < 1e-4, "{gap}");
    }

    #[test]
    fn global_pooling_averages_each_channel_and_suits_any_image_size() {
        let device = Device::flex();
        let config = CnnConfig {
            in_channels: 3,
            image_size: [20, 24],
            global_pool: true,
            ..CnnConfig::preset(Preset::Cifar, 4)
        };
        config.check().unwrap();
        assert_eq!(
            config.flatten_size(),
            64,
            "one value per channel of the last block"
        );
        let cnn = config.init(&device);
        let features = Tensor::<4>::from_floats(
            [[[[1.0, 2.0], [3.0, 6.0]], [[0.0, 0.0], [0.0, 4.0]]]],
            &device,
        );
        let pooled: Vec<f32> = cnn.head_input(features).into_data().try_to_vec().unwrap();
        assert_eq!(pooled, [3.0, 1.0]);
        for size in [[20, 24], [40, 33]] {
            let images =
                Tensor::<4>::random([2, 3, size[0], size[1]], Distribution::Default, &device);
            assert_eq!(cnn.forward(images).dims(), [2, 4]);
        }
        let rows = Model::layers(&cnn, &[3, 20, 24]);
        assert!(
            rows.iter().any(|r| r.kind == "GlobalAveragePooling2D"),
            "{rows:?}"
        );
    }

    #[test]
    fn presets_give_one_row_of_logits_per_image() {
        let device = Device::flex();
        for (preset, shape) in [
            (Preset::Digits, [2, 1, 8, 8]),
            (Preset::Mnist, [2, 1, 28, 28]),
            (Preset::Cifar, [2, 3, 32, 32]),
            (Preset::CifarBn, [2, 3, 32, 32]),
        ] {
            let cnn = CnnConfig::preset(preset, 10).init(&device);
            let x = Tensor::<4>::random(shape, Distribution::Default, &device);
            assert_eq!(cnn.forward(x).dims(), [2, 10], "{preset}");
        }
    }

    #[test]
    fn flatten_sizes_and_parameter_counts_match_hand_computation() {
        let device = Device::flex();
        // MNIST: 28 -conv-> 26 -pool-> 13 -conv-> 11 -pool-> 5; 64 * 5 * 5 = 1600.
        // conv1 32*1*9+32 = 320, conv2 64*32*9+64 = 18496, dense 1600*128+128 = 204928,
        // output 128*10+10 = 1290.
        let mnist = CnnConfig::preset(Preset::Mnist, 10);
        assert_eq!(mnist.flatten_size(), 1600);
        assert_eq!(
            mnist.init(&device).num_params(),
            320 + 18_496 + 204_928 + 1290
        );
        // CIFAR: 32 -> 30 -> 15 -> 13 -> 6; 64 * 6 * 6 = 2304.
        // conv1 32*3*9+32 = 896, dense 2304*128+128 = 295040.
        let cifar = CnnConfig::preset(Preset::Cifar, 10);
        assert_eq!(cifar.flatten_size(), 2304);
        assert_eq!(
            cifar.init(&device).num_params(),
            896 + 18_496 + 295_040 + 1290
        );
        assert_eq!(
            CnnConfig::preset(Preset::CifarBn, 10).flatten_size(),
            128 * 4 * 4
        );
        // Digits: 8 -same conv-> 8 -pool-> 4 -same conv-> 4 -pool-> 2; 64 * 2 * 2 = 256;
        // dense 256*128+128 = 32896.
        let digits = CnnConfig::preset(Preset::Digits, 10);
        assert_eq!(digits.flatten_size(), 256);
        assert_eq!(
            digits.init(&device).num_params(),
            320 + 18_496 + 32_896 + 1290
        );
        assert_eq!(Preset::for_images(&[1, 8, 8]), Some(Preset::Digits));
        assert_eq!(Preset::for_images(&[3, 32, 32]), Some(Preset::Cifar));
        assert_eq!(Preset::for_images(&[64]), None);
    }

    #[test]
    fn a_net_that_shrinks_the_image_to_nothing_is_an_error() {
        let mut tiny = CnnConfig::preset(Preset::Mnist, 10);
        tiny.image_size = [8, 8];
        let e = tiny.check().unwrap_err();
        assert_eq!(
            e,
            CnnConfigError::ImageVanishes {
                block: 1,
                input: [3, 3],
                output: [0, 0]
            }
        );
        assert!(e.to_string().contains("shrinks the image to nothing"));
        let mut wrong = CnnConfig::preset(Preset::Mnist, 10);
        wrong.in_channels = 3;
        assert!(matches!(
            wrong.check(),
            Err(CnnConfigError::Channels {
                block: 0,
                expected: 3,
                got: 1
            })
        ));
    }

    #[test]
    fn batch_norm_in_evaluation_uses_running_statistics() {
        let device = Device::flex().autodiff();
        let config = CnnConfig::new(
            1,
            [6, 6],
            vec![ConvBlockConfig::new([1, 2]).with_batch_norm(true)],
            vec![],
            2,
        );
        let mut cnn = config.init(&device);
        // Weights of ones (random ones may sum to about 0 and leave the mean where it was):
        // training passes on data of mean 3 move the running mean towards 3 x 9 + bias.
        let conv = &mut cnn.blocks[0].conv;
        conv.weight = Param::from_tensor(conv.weight.val().ones_like());
        for _ in 0..5 {
            let x = Tensor::<4>::random([8, 1, 6, 6], Distribution::Normal(3.0, 1.0), &device);
            let _ = cnn.forward(x);
        }
        let norm = cnn.blocks[0].norm.as_ref().unwrap();
        let running: Vec<f32> = norm
            .running_mean
            .value()
            .into_data()
            .iter::<f32>()
            .collect();
        assert!(
            running.iter().all(|m| m.abs() > 1.0),
            "running mean moved: {running:?}"
        );

        // In evaluation one sample's output does not depend on the others in its batch.
        let eval = cnn.valid();
        let a = Tensor::<4>::random([1, 1, 6, 6], Distribution::Default, &Device::flex());
        let b = Tensor::<4>::random(
            [3, 1, 6, 6],
            Distribution::Normal(10.0, 5.0),
            &Device::flex(),
        );
        let alone: Vec<f32> = eval.forward(a.clone()).into_data().iter::<f32>().collect();
        let batched: Vec<f32> = eval
            .forward(Tensor::cat(vec![a, b], 0))
            .into_data()
            .iter::<f32>()
            .take(2)
            .collect();
        for (x, y) in alone.iter().zip(&batched) {
            assert!((x - y).abs() < 1e-5, "{alone:?} vs {batched:?}");
        }
    }

    /// A summary row: name, output shape, parameters.
    type Row = (String, Vec<usize>, usize);

    /// Rows of a preset's summary, and its total and trainable parameter counts.
    fn rows(preset: Preset) -> (Vec<Row>, usize, usize) {
        let device = Device::flex();
        let cnn = CnnConfig::preset(preset, 10).init(&device);
        let shape = if preset == Preset::Mnist {
            [1, 28, 28]
        } else {
            [3, 32, 32]
        };
        let s = kiln_common::summary(&cnn, &shape);
        let rows = s
            .layers
            .iter()
            .map(|l| (l.name.clone(), l.output.clone(), l.params))
            .collect();
        (rows, s.total, s.trainable)
    }

    fn row(name: &str, output: &[usize], params: usize) -> Row {
        (name.to_string(), output.to_vec(), params)
    }

    #[test]
    fn preset_summaries_match_hand_counts() {
        // MNIST: conv 1->32 3x3: 32*9+32 = 320; 28 -> 26, pool -> 13; conv 32->64: 64*32*9+64
        // = 18,496; 13 -> 11 -> 5; flatten 64*25 = 1,600; dense 1600*128+128 = 204,928;
        // output 128*10+10 = 1,290.
        let (rows, total, trainable) = super::tests::rows(Preset::Mnist);
        let mut expected = vec![
            row("blocks.0.conv", &[32, 26, 26], 320),
            row("blocks.0.max_pool", &[32, 13, 13], 0),
            row("blocks.1.conv", &[64, 11, 11], 18_496),
            row("blocks.1.max_pool", &[64, 5, 5], 0),
            row("flatten", &[1600], 0),
            row("head.hidden.0.linear", &[128], 204_928),
        ];
        let head_dropout = rows.iter().any(|r| r.0 == "head.hidden.0.dropout");
        if head_dropout {
            expected.push(row("head.hidden.0.dropout", &[128], 0));
        }
        expected.push(row("head.output", &[10], 1_290));
        assert_eq!(rows, expected);
        assert_eq!((total, trainable), (225_034, 225_034));

        // CIFAR: conv 3->32: 32*27+32 = 896; 32 -> 30 -> 15 -> 13 -> 6; flatten 2,304; dense
        // 2304*128+128 = 295,040.
        let (rows, total, _) = super::tests::rows(Preset::Cifar);
        assert_eq!(rows[0], row("blocks.0.conv", &[32, 30, 30], 896));
        assert_eq!(rows[3], row("blocks.1.max_pool", &[64, 6, 6], 0));
        assert!(rows.contains(&row("flatten", &[2304], 0)));
        assert!(rows.contains(&row("head.hidden.0.linear", &[128], 295_040)));
        assert_eq!(total, 896 + 18_496 + 295_040 + 1_290);

        // CIFAR-BN: `same` convs 3->32, 32->32, 32->64, 64->64, 64->128, 128->128, each with
        // batch norm: 4*C parameters, as Keras counts them (gamma and beta trainable, the
        // running mean and variance not); pools 32 -> 16 -> 8 -> 4.
        let (rows, total, trainable) = super::tests::rows(Preset::CifarBn);
        let conv = |i: usize, o: usize| o * i * 9 + o;
        let convs = conv(3, 32)
            + conv(32, 32)
            + conv(32, 64)
            + conv(64, 64)
            + conv(64, 128)
            + conv(128, 128);
        let channels = 32 + 32 + 64 + 64 + 128 + 128;
        // 2048*128+128 = 262,272; 128*10+10 = 1,290.
        let head = 262_272 + 1_290;
        assert!(rows.contains(&row("blocks.0.conv", &[32, 32, 32], 896)));
        assert!(rows.contains(&row("blocks.0.norm", &[32, 32, 32], 128)));
        assert!(rows.contains(&row("blocks.1.max_pool", &[32, 16, 16], 0)));
        assert!(rows.contains(&row("blocks.5.max_pool", &[128, 4, 4], 0)));
        assert!(rows.contains(&row("flatten", &[2048], 0)));
        assert_eq!(total, convs + 4 * channels + head);
        assert_eq!(total, 552_362);
        assert_eq!(trainable, total - 2 * channels);
        assert_eq!(
            rows.iter().map(|r| r.2).sum::<usize>(),
            total,
            "rows add up"
        );
    }
}
