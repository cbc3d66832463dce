use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::tensor::{Bool, Device, Int, Tensor};
use kiln_common::dense::dense;
use kiln_common::{Activation, BatchInput, Dropout, DropoutConfig, Layer, LayerActivations, Model};

use crate::{
    Encoder, EncoderBlockConfig, EncoderConfig, PositionalEncoding, PositionalEncodingConfig,
    Positions,
};

/// The token id of padding; a tokeniser pads with it and the classifier masks it out.
pub const PAD_ID: usize = 0;

/// How the encoder's outputs become one vector per sequence.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over non-padded positions.
    Mean,
    /// The output at a learned `[CLS]` vector prepended to every sequence (BERT).
    Cls,
}

/// A hyper-parameter of [`SequenceClassifierConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransformerConfigError {
    #[error("{0} must be at least 1")]
    /// A size (named) is 0.
    Zero(&'static str),
    /// The heads do not split the width evenly.
    #[error("n_heads ({n_heads}) must divide d_model ({d_model})")]
    Heads {
        /// The width.
        d_model: usize,
        /// The number of heads.
        n_heads: usize,
    },
    #[error("d_model must be even for sinusoidal positions, got {0}")]
    /// Sinusoidal positions need an even `d_model`.
    OddWidth(usize),
    #[error("max_len must be at most 10000, got {0}")]
    /// `max_len` beyond the positional table's 10,000.
    TooLong(usize),
    #[error("dropout must lie in [0, 1), got {0}")]
    /// A dropout probability outside [0, 1).
    Dropout(f64),
}

/// A Transformer encoder classifier (or regressor):
///
/// ```text
/// tokens [batch, seq] -> embedding * sqrt(d_model)  ┐
/// or features [batch, seq, d_input] -> Linear       ┘-> ([CLS] +) positions -> dropout
///   -> encoder blocks (padding masked) -> mean or [CLS] -> dropout -> Linear -> output
/// ```
///
/// # Example
///
/// A spam filter's shape: 64 token ids per text, two classes.
///
/// ```
/// use burn::tensor::{Device, Int, Tensor};
/// use kiln_common::Model;
/// use kiln_transformer::SequenceClassifierConfig;
///
/// let device = Device::flex();
/// let config = SequenceClassifierConfig::new(32, 2).with_n_heads(4).with_d_ff(64);
/// config.check()?;
/// let model = config.init_tokens(1000, &device);
/// let logits = model.forward(Tensor::<2, Int>::zeros([8, 64], &device));
/// assert_eq!(logits.dims(), [8, 2]);
/// # Ok::<(), kiln_transformer::TransformerConfigError>(())
/// ```
#[derive(Config, Debug)]
pub struct SequenceClassifierConfig {
    /// Width of every position's vector.
    pub d_model: usize,
    /// Outputs: classes (logits) or regression targets.
    pub d_output: usize,
    /// Attention heads per block; must divide `d_model`. Default: 4.
    #[config(default = 4)]
    pub n_heads: usize,
    /// Feed-forward width. Default: 128.
    #[config(default = 128)]
    pub d_ff: usize,
    /// Encoder blocks. Default: 2.
    #[config(default = 2)]
    pub n_blocks: usize,
    /// Dropout rate, in training only. Default: 0.1.
    #[config(default = 0.1)]
    pub dropout: f64,
    /// Feed-forward activation. Default: ReLU.
    #[config(default = "Activation::Relu")]
    pub activation: Activation,
    /// Pre-norm blocks (and a final layer norm). Default: false, post-norm.
    #[config(default = false)]
    pub norm_first: bool,
    /// Longest input sequence. Default: 512.
    #[config(default = 512)]
    pub max_len: usize,
    /// Default: sinusoidal.
    #[config(default = "Positions::Sinusoidal")]
    pub positions: Positions,
    /// Default: mean.
    #[config(default = "Pooling::Mean")]
    pub pooling: Pooling,
}

impl SequenceClassifierConfig {
    /// Checks every hyper-parameter once, up front.
    pub fn check(&self) -> Result<(), TransformerConfigError> {
        for (name, v) in [
            ("d_model", self.d_model),
            ("d_output", self.d_output),
            ("n_heads", self.n_heads),
            ("d_ff", self.d_ff),
            ("n_blocks", self.n_blocks),
            ("max_len", self.max_len),
        ] {
            if v == 0 {
                return Err(TransformerConfigError::Zero(name));
            }
        }
        if !self.d_model.is_multiple_of(self.n_heads) {
            return Err(TransformerConfigError::Heads {
                d_model: self.d_model,
                n_heads: self.n_heads,
            });
        }
        if self.positions == Positions::Sinusoidal && !self.d_model.is_multiple_of(2) {
            return Err(TransformerConfigError::OddWidth(self.d_model));
        }
        if self.max_len >= 10_000 {
            return Err(TransformerConfigError::TooLong(self.max_len));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(TransformerConfigError::Dropout(self.dropout));
        }
        Ok(())
    }

    /// A classifier of token ids from a vocabulary of `vocab_size` (id [`PAD_ID`] is padding).
    ///
    /// # Panics
    /// If [`check`](Self::check) fails; call it first to get the error as a value.
    pub fn init_tokens(&self, vocab_size: usize, device: &Device) -> SequenceClassifier<Tokens> {
        // N(0, 1 / d_model): scaled by sqrt(d_model) on the way in, token vectors have unit
        // variance, the scale of the positions added to them (the original Transformer's; Burn's
        // default N(0, 1) made them sqrt(d_model) times larger, the positions drowned out).
        let embedding = EmbeddingConfig::new(vocab_size, self.d_model)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: (self.d_model as f64).sqrt().recip(),
            })
            .init(device);
        self.init_with(Tokens { embedding }, device)
    }

    /// A classifier of real-valued sequences with `d_input` features per step.
    ///
    /// # Panics
    /// If [`check`](Self::check) fails.
    pub fn init_features(&self, d_input: usize, device: &Device) -> SequenceClassifier<Features> {
        let projection = LinearConfig::new(d_input, self.d_model).init(device);
        self.init_with(Features { projection }, device)
    }

    fn init_with<E: Embed>(&self, input: E, device: &Device) -> SequenceClassifier<E> {
        if let Err(e) = self.check() {
            panic!("invalid SequenceClassifierConfig: {e}");
        }
        let block = EncoderBlockConfig::new(self.d_model, self.n_heads, self.d_ff)
            .with_dropout(self.dropout)
            .with_activation(self.activation)
            .with_norm_first(self.norm_first);
        let cls = (self.pooling == Pooling::Cls).then(|| {
            Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            }
            .init([1, 1, self.d_model], device)
        });
        SequenceClassifier {
            input,
            cls,
            positions: PositionalEncodingConfig::new(self.max_len + 1, self.d_model)
                .with_kind(self.positions)
                .init(device),
            encoder: EncoderConfig::new(block)
                .with_n_blocks(self.n_blocks)
                .init(device),
            final_norm: self
                .norm_first
                .then(|| LayerNormConfig::new(self.d_model).init(device)),
            dropout: DropoutConfig::new(self.dropout).init(),
            head: LinearConfig::new(self.d_model, self.d_output).init(device),
        }
    }
}

/// What turns a batch of inputs into `[batch, seq, d_model]` vectors and a padding mask.
pub trait Embed: Module + burn::module::ModuleDisplay + 'static {
    /// What a batch of inputs is.
    type Input: BatchInput;

    /// # Shapes
    /// - output: `[batch, seq, d_model]`, and `[batch, seq]` true at padded positions
    fn embed(&self, input: Self::Input) -> (Tensor<3>, Option<Tensor<2, Bool>>);
}

/// Token ids through an embedding table, scaled by `sqrt(d_model)` as in the original paper.
#[derive(Module, Debug)]
pub struct Tokens {
    /// The token embedding.
    pub embedding: Embedding,
}

impl Embed for Tokens {
    type Input = Tensor<2, Int>;

    fn embed(&self, ids: Tensor<2, Int>) -> (Tensor<3>, Option<Tensor<2, Bool>>) {
        let padding = ids.clone().equal_elem(PAD_ID as i64);
        let d_model = self.embedding.weight.dims()[1];
        let x = self
            .embedding
            .forward(ids)
            .mul_scalar((d_model as f32).sqrt());
        (x, Some(padding))
    }
}

/// Real-valued steps through a linear projection (time series, image rows).
#[derive(Module, Debug)]
pub struct Features {
    /// The projection of each step to `d_model`.
    pub projection: Linear,
}

impl Embed for Features {
    type Input = Tensor<3>;

    fn embed(&self, x: Tensor<3>) -> (Tensor<3>, Option<Tensor<2, Bool>>) {
        (dense(&self.projection, x, None, None), None)
    }
}

/// The encoder's input, shared by the classifier and the masked-language model: embeddings,
/// the `[CLS]` vector (prepended, never padding) and positions, then dropout; and the padding.
///
/// # Shapes
/// - output: `[batch, seq (+1 with CLS), d_model]`, and `[batch, seq (+1)]`
pub(crate) fn embed<E: Embed>(
    (embedding, cls, positions, dropout): (
        &E,
        Option<&Param<Tensor<3>>>,
        &PositionalEncoding,
        &Dropout,
    ),
    input: E::Input,
) -> (Tensor<3>, Option<Tensor<2, Bool>>) {
    let (mut x, mut padding) = embedding.embed(input);
    let [batch, _, d_model] = x.dims();
    if let Some(cls) = cls {
        x = Tensor::cat(vec![cls.val().expand([batch, 1, d_model]), x], 1);
        padding = padding.map(|p| {
            let real = Tensor::<2, Int>::zeros([batch, 1], &p.device()).equal_elem(1);
            Tensor::cat(vec![real, p], 1)
        });
    }
    (dropout.forward(positions.forward(x)), padding)
}

/// The encoder blocks, then the final layer norm of pre-norm models.
pub(crate) fn encode(
    encoder: &Encoder,
    final_norm: Option<&LayerNorm>,
    x: Tensor<3>,
    padding: Option<Tensor<2, Bool>>,
) -> Tensor<3> {
    let x = encoder.forward(x, padding);
    match final_norm {
        Some(norm) => norm.forward(x),
        None => x,
    }
}

/// The summary rows of the embedding, `[CLS]` vector, positions, encoder blocks and final norm
/// for one input, shared by the classifier and the masked-language model, and the encoder's
/// output.
pub(crate) fn encoder_layers<E: Embed>(
    (embedding, cls, positions): (&E, Option<&Param<Tensor<3>>>, &PositionalEncoding),
    encoder: &Encoder,
    final_norm: Option<&LayerNorm>,
    input: E::Input,
) -> (Vec<Layer>, Tensor<3>) {
    let (mut x, padding) = embedding.embed(input);
    let device = x.device();
    let mut rows = vec![Layer::new("input", "Embedding", embedding, &x)];
    if let Some(cls) = cls {
        let [batch, _, d_model] = x.dims();
        x = Tensor::cat(vec![cls.val().expand([batch, 1, d_model]), x], 1);
        rows.push(Layer::new("cls", "[CLS] token", cls, &x));
    }
    let padding = padding.map(|p| match cls {
        Some(_) => {
            let real = Tensor::<2, Int>::zeros([p.dims()[0], 1], &device).equal_elem(1);
            Tensor::cat(vec![real, p], 1)
        }
        None => p,
    });
    let mut x = positions.forward(x);
    rows.push(Layer::new(
        "positions",
        "Positional encoding",
        positions,
        &x,
    ));
    for (i, block) in encoder.blocks.iter().enumerate() {
        x = block.forward(x, padding.clone());
        rows.push(Layer::new(
            format!("encoder.blocks.{i}"),
            "Encoder block",
            block,
            &x,
        ));
    }
    if let Some(norm) = final_norm {
        x = norm.forward(x);
        rows.push(Layer::new("final_norm", "LayerNorm", norm, &x));
    }
    (rows, x)
}

/// See [`SequenceClassifierConfig`]; `E` is [`Tokens`] for text, [`Features`] for series.
#[derive(Module, Debug)]
pub struct SequenceClassifier<E: Embed> {
    /// The embedding of the inputs.
    pub input: E,
    /// The `[CLS]` vector `[1, 1, d_model]`, with CLS pooling.
    pub cls: Option<Param<Tensor<3>>>,
    /// Positional encodings added to the embeddings.
    pub positions: PositionalEncoding,
    /// The encoder blocks.
    pub encoder: Encoder,
    /// Layer norm after the last block, with pre-norm blocks (PyTorch's `norm`).
    pub final_norm: Option<LayerNorm>,
    /// Dropout before the head.
    pub dropout: Dropout,
    /// The output layer on the pooled vector.
    pub head: Linear,
}

impl<E: Embed> SequenceClassifier<E> {
    /// The encoder's output at every position, and the padding mask.
    ///
    /// # Shapes
    /// - output: `[batch, seq (+1 with CLS), d_model]`, and `[batch, seq (+1)]`
    pub fn encode(&self, input: E::Input) -> (Tensor<3>, Option<Tensor<2, Bool>>) {
        let (x, padding) = self.embed(input);
        (
            encode(&self.encoder, self.final_norm.as_ref(), x, padding.clone()),
            padding,
        )
    }

    /// The encoder's input: embeddings, the `[CLS]` vector and positions, and the padding.
    fn embed(&self, input: E::Input) -> (Tensor<3>, Option<Tensor<2, Bool>>) {
        let parts = (
            &self.input,
            self.cls.as_ref(),
            &self.positions,
            &self.dropout,
        );
        embed(parts, input)
    }

    /// One vector per sequence: the `[CLS]` output, or the mean over non-padded positions.
    ///
    /// # Shapes
    /// - output: `[batch, d_model]`
    pub fn pool(&self, input: E::Input) -> Tensor<2> {
        let (x, padding) = self.encode(input);
        let [batch, seq, d_model] = x.dims();
        if self.cls.is_some() {
            return x
                .slice([0..batch, 0..1, 0..d_model])
                .reshape([batch, d_model]);
        }
        match padding {
            None => x.mean_dim(1).reshape([batch, d_model]),
            Some(padding) => {
                let keep = padding.bool_not().float().reshape([batch, seq, 1]);
                let count = keep.clone().sum_dim(1).clamp_min(1.0); // [batch, 1, 1]
                (x * keep).sum_dim(1).div(count).reshape([batch, d_model])
            }
        }
    }
}

impl<E: Embed> Model for SequenceClassifier<E> {
    type Input = E::Input;

    /// # Shapes
    /// - input: `[batch, seq]` token ids, or `[batch, seq, d_input]` features
    /// - output: `[batch, d_output]`
    fn forward(&self, input: E::Input) -> Tensor<2> {
        dense(
            &self.head,
            self.dropout.forward(self.pool(input)),
            None,
            None,
        )
    }

    /// Each encoder block's feed-forward pre-activations (`encoder.blocks.0`, ...).
    fn activations(&self, input: E::Input) -> Vec<LayerActivations> {
        let (x, padding) = self.embed(input);
        let (_, layers) = self.encoder.activations(x, padding);
        layers.into_iter().map(|l| l.within("encoder")).collect()
    }

    /// The embedding, each encoder block, the pooling and the head.
    fn layers(&self, sample_shape: &[usize]) -> Vec<Layer> {
        let model = self.valid();
        let device = model.head.weight.device();
        let len: usize = sample_shape.iter().product();
        let input = E::Input::from_samples(vec![0.0; len], 1, sample_shape, &device);
        let parts = (&model.input, model.cls.as_ref(), &model.positions);
        let (mut rows, _) = encoder_layers(
            parts,
            &model.encoder,
            model.final_norm.as_ref(),
            input.clone(),
        );
        let pooled = model.pool(input);
        let kind = if model.cls.is_some() {
            "[CLS] output"
        } else {
            "mean over positions"
        };
        rows.push(Layer::new("pooling", kind, &model.dropout, &pooled));
        let out = model.head.forward(pooled);
        rows.push(Layer::new("head", "Linear", &model.head, &out));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData};

    fn config() -> SequenceClassifierConfig {
        SequenceClassifierConfig::new(16, 3)
            .with_n_heads(2)
            .with_d_ff(32)
            .with_dropout(0.0)
            .with_max_len(12)
    }

    #[test]
    fn shapes_for_tokens_and_features_and_each_pooling() {
        let device = Device::flex();
        for pooling in [Pooling::Mean, Pooling::Cls] {
            for norm_first in [false, true] {
                let config = config().with_pooling(pooling).with_norm_first(norm_first);
                let text = config.init_tokens(50, &device);
                let ids = Tensor::<2, Int>::from_data(
                    TensorData::new(vec![5i64, 7, 9, 0, 3, 4, 0, 0], [2, 4]),
                    &device,
                );
                assert_eq!(text.forward(ids).dims(), [2, 3]);
                let series = config.init_features(5, &device);
                let x = Tensor::<3>::random([4, 10, 5], Distribution::Default, &device);
                assert_eq!(series.forward(x).dims(), [4, 3]);
            }
        }
    }

    #[test]
    fn padding_tokens_do_not_change_the_prediction() {
        let device = Device::flex();
        for pooling in [Pooling::Mean, Pooling::Cls] {
            let model = config().with_pooling(pooling).init_tokens(50, &device);
            let ids =
                |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [1, 6]), &device);
            let short = model.forward(ids(vec![5, 7, 9, 0, 0, 0]));
            let padded_more = model.forward(ids(vec![5, 7, 9, 0, 0, 0]).slice([0..1, 0..4]));
            short
                .into_data()
                .assert_approx_eq::<f32>(&padded_more.into_data(), Default::default());
        }
    }

    #[test]
    fn check_names_the_bad_hyper_parameter() {
        assert_eq!(
            config().with_n_heads(3).check(),
            Err(TransformerConfigError::Heads {
                d_model: 16,
                n_heads: 3
            })
        );
        assert_eq!(
            config().with_n_blocks(0).check(),
            Err(TransformerConfigError::Zero("n_blocks"))
        );
        assert!(config().check().is_ok());
    }
}
