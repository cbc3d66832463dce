use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use kiln_common::dense::dense;
use kiln_common::{Dropout, DropoutConfig, Layer, Model};

use crate::{Gru, GruConfig, Lstm, LstmConfig};

/// The recurrent cell of a [`SequenceModel`].
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Cell {
    /// Long short-term memory ([`Lstm`]).
    Lstm,
    /// Gated recurrent unit ([`Gru`]).
    Gru,
}

/// Which outputs of the last recurrent layer the head sees.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The last step (many-to-one); with lengths, each sequence's last real step. For a
    /// bidirectional layer, the backward half comes from the first step, where that direction
    /// ends.
    Last,
    /// The mean over steps (over real steps with lengths).
    Mean,
}

/// A hyper-parameter of [`SequenceModelConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SequenceConfigError {
    #[error("{0} must be at least 1")]
    /// A size (named) is 0.
    Zero(&'static str),
    #[error("dropout must lie in [0, 1), got {0}")]
    /// A dropout probability outside [0, 1).
    Dropout(f64),
}

/// A recurrent sequence model:
///
/// ```text
/// x [batch, seq, d_input] -> (LSTM|GRU -> dropout) x layers -> pool over steps -> Linear -> output
/// ```
///
/// # Example
///
/// A two-layer LSTM reading 20 steps of one feature and forecasting one value:
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use kiln_lstm::SequenceModelConfig;
///
/// let device = Device::flex();
/// let config = SequenceModelConfig::new(1, 32, 1).with_layers(2).with_dropout(0.1);
/// config.check()?;
/// let model = config.init(&device);
/// let y = model.forward_with_lengths(Tensor::zeros([4, 20, 1], &device), None);
/// assert_eq!(y.dims(), [4, 1]);
/// # Ok::<(), kiln_lstm::SequenceConfigError>(())
/// ```
#[derive(Config, Debug)]
pub struct SequenceModelConfig {
    /// Features per step.
    pub d_input: usize,
    /// Hidden size of every recurrent layer.
    pub d_hidden: usize,
    /// Outputs: classes (logits) or regression targets.
    pub d_output: usize,
    /// Default: LSTM.
    #[config(default = "Cell::Lstm")]
    pub cell: Cell,
    /// Stacked recurrent layers. Default: 1.
    #[config(default = 1)]
    pub layers: usize,
    /// Default: off.
    #[config(default = false)]
    pub bidirectional: bool,
    /// Dropout between recurrent layers and before the head, in training only. Default: 0.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Default: the last step.
    #[config(default = "Pooling::Last")]
    pub pooling: Pooling,
}

impl SequenceModelConfig {
    /// Checks every hyper-parameter once, up front.
    pub fn check(&self) -> Result<(), SequenceConfigError> {
        for (name, v) in [
            ("d_input", self.d_input),
            ("d_hidden", self.d_hidden),
            ("d_output", self.d_output),
            ("layers", self.layers),
        ] {
            if v == 0 {
                return Err(SequenceConfigError::Zero(name));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(SequenceConfigError::Dropout(self.dropout));
        }
        Ok(())
    }

    /// # Panics
    /// If [`check`](Self::check) fails; call it first to get the error as a value.
    pub fn init(&self, device: &Device) -> SequenceModel {
        if let Err(e) = self.check() {
            panic!("invalid SequenceModelConfig: {e}");
        }
        let dirs = if self.bidirectional { 2 } else { 1 };
        let width = |layer: usize| {
            if layer == 0 {
                self.d_input
            } else {
                self.d_hidden * dirs
            }
        };
        let (mut lstms, mut grus) = (Vec::new(), Vec::new());
        for layer in 0..self.layers {
            match self.cell {
                Cell::Lstm => lstms.push(
                    LstmConfig::new(width(layer), self.d_hidden)
                        .with_bidirectional(self.bidirectional)
                        .init(device),
                ),
                Cell::Gru => grus.push(
                    GruConfig::new(width(layer), self.d_hidden)
                        .with_bidirectional(self.bidirectional)
                        .init(device),
                ),
            }
        }
        SequenceModel {
            lstms,
            grus,
            dropout: DropoutConfig::new(self.dropout).init(),
            head: LinearConfig::new(self.d_hidden * dirs, self.d_output).init(device),
            pooling: self.pooling,
            d_hidden: self.d_hidden,
        }
    }
}

/// A stacked recurrent model with a head; see [`SequenceModelConfig`].
#[derive(Module, Debug)]
pub struct SequenceModel {
    /// The LSTM layers (empty when the cell is a GRU).
    pub lstms: Vec<Lstm>,
    /// The GRU layers (empty when the cell is an LSTM).
    pub grus: Vec<Gru>,
    /// Dropout between layers and before the head.
    pub dropout: Dropout,
    /// The output layer.
    pub head: Linear,
    #[module(skip)]
    /// Which steps the head sees.
    pub pooling: Pooling,
    #[module(skip)]
    /// Size of each layer's hidden state.
    pub d_hidden: usize,
}

impl SequenceModel {
    /// The last recurrent layer's output at every step (many-to-many, before the head).
    ///
    /// # Shapes
    /// - x: `[batch, seq, d_input]`
    /// - output: `[batch, seq, d_hidden * directions]`
    pub fn encode(&self, x: Tensor<3>, lengths: Option<&[usize]>) -> Tensor<3> {
        let mut h = x;
        let layers = self.lstms.len().max(self.grus.len());
        for layer in 0..layers {
            h = match (self.lstms.get(layer), self.grus.get(layer)) {
                (Some(lstm), _) => lstm.forward(h, lengths).0,
                (_, Some(gru)) => gru.forward(h, lengths).0,
                _ => unreachable!("one cell kind per model"),
            };
            h = self.dropout.forward(h);
        }
        h
    }

    /// The head applied at every step (many-to-many).
    ///
    /// # Shapes
    /// - x: `[batch, seq, d_input]`
    /// - output: `[batch, seq, d_output]`
    pub fn forward_every_step(&self, x: Tensor<3>, lengths: Option<&[usize]>) -> Tensor<3> {
        dense(&self.head, self.encode(x, lengths), None, None)
    }

    /// Pooled over steps, then the head (many-to-one).
    ///
    /// # Shapes
    /// - x: `[batch, seq, d_input]`
    /// - output: `[batch, d_output]`
    pub fn forward_with_lengths(&self, x: Tensor<3>, lengths: Option<&[usize]>) -> Tensor<2> {
        let [batch, seq, _] = x.dims();
        let h = self.encode(x, lengths);
        let width = h.dims()[2];
        let pooled = match self.pooling {
            Pooling::Mean => match lengths {
                None => h.mean_dim(1).squeeze_dim(1),
                Some(l) => {
                    let device = h.device();
                    let mask: Vec<f32> = l
                        .iter()
                        .flat_map(|&n| (0..seq).map(move |t| f32::from(u8::from(t < n))))
                        .collect();
                    let mask = Tensor::<3>::from_data(
                        burn::tensor::TensorData::new(mask, [batch, seq, 1]),
                        &device,
                    );
                    let counts: Vec<f32> = l.iter().map(|&n| n.max(1) as f32).collect();
                    let counts = Tensor::<2>::from_data(
                        burn::tensor::TensorData::new(counts, [batch, 1]),
                        &device,
                    );
                    (h * mask).sum_dim(1).squeeze_dim::<2>(1) / counts
                }
            },
            Pooling::Last => {
                // Padded steps repeat the last real state, so the final step holds it.
                let forward = h.clone().narrow(1, seq - 1, 1).narrow(2, 0, self.d_hidden);
                let last = if width > self.d_hidden {
                    let backward = h.narrow(1, 0, 1).narrow(2, self.d_hidden, self.d_hidden);
                    Tensor::cat(vec![forward, backward], 2)
                } else {
                    forward
                };
                last.squeeze_dim(1)
            }
        };
        dense(&self.head, pooled, None, None)
    }
}

impl Model for SequenceModel {
    type Input = Tensor<3>;

    fn forward(&self, input: Tensor<3>) -> Tensor<2> {
        self.forward_with_lengths(input, None)
    }

    /// One row per recurrent layer (its output at every step), then the pooling and the head.
    fn layers(&self, sample_shape: &[usize]) -> Vec<Layer> {
        let model = self.valid();
        let (seq, d_input) = match sample_shape {
            [seq, d_input] => (*seq, *d_input),
            other => (1, other.iter().product()),
        };
        let mut h = Tensor::<3>::zeros([1, seq, d_input], &model.head.weight.device());
        let mut rows = Vec::new();
        for (i, lstm) in model.lstms.iter().enumerate() {
            h = lstm.forward(h, None).0;
            rows.push(Layer::new(format!("lstms.{i}"), "LSTM", lstm, &h));
        }
        for (i, gru) in model.grus.iter().enumerate() {
            h = gru.forward(h, None).0;
            rows.push(Layer::new(format!("grus.{i}"), "GRU", gru, &h));
        }
        let out = model.forward_with_lengths(Tensor::zeros([1, seq, d_input], &h.device()), None);
        let kind = match model.pooling {
            Pooling::Last => "last step",
            Pooling::Mean => "mean over steps",
        };
        rows.push(Layer::shaped("pooling", kind, 0, vec![h.dims()[2]]));
        rows.push(Layer::new("head", "Linear", &model.head, &out));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn shapes_for_each_combination() {
        let device = Device::flex();
        let x = Tensor::<3>::random([4, 6, 3], Distribution::Default, &device);
        for cell in [Cell::Lstm, Cell::Gru] {
            for bidirectional in [false, true] {
                for pooling in [Pooling::Last, Pooling::Mean] {
                    let m = SequenceModelConfig::new(3, 5, 2)
                        .with_cell(cell)
                        .with_layers(2)
                        .with_bidirectional(bidirectional)
                        .with_pooling(pooling)
                        .with_dropout(0.1)
                        .init(&device);
                    let dirs = if bidirectional { 2 } else { 1 };
                    assert_eq!(m.encode(x.clone(), None).dims(), [4, 6, 5 * dirs]);
                    assert_eq!(m.forward_every_step(x.clone(), None).dims(), [4, 6, 2]);
                    assert_eq!(m.forward_with_lengths(x.clone(), None).dims(), [4, 2]);
                }
            }
        }
    }

    #[test]
    fn padding_does_not_change_the_pooled_output_when_lengths_are_given() {
        let device = Device::flex();
        for pooling in [Pooling::Last, Pooling::Mean] {
            let m = SequenceModelConfig::new(2, 4, 3)
                .with_bidirectional(true)
                .with_pooling(pooling)
                .init(&device);
            let real = Tensor::<3>::random([1, 3, 2], Distribution::Default, &device);
            let junk = Tensor::<3>::random([1, 2, 2], Distribution::Uniform(5.0, 9.0), &device);
            let alone: Vec<f32> = m
                .forward_with_lengths(real.clone(), None)
                .into_data()
                .iter()
                .collect();
            let padded = Tensor::cat(vec![real, junk], 1);
            let with: Vec<f32> = m
                .forward_with_lengths(padded, Some(&[3]))
                .into_data()
                .iter()
                .collect();
            for (a, b) in alone.iter().zip(&with) {
                assert!((a - b).abs() < 1e-5, "{pooling:?}: {alone:?} vs {with:?}");
            }
        }
    }

    #[test]
    fn bad_hyper_parameters_are_typed_errors() {
        assert_eq!(
            SequenceModelConfig::new(3, 5, 2).with_layers(0).check(),
            Err(SequenceConfigError::Zero("layers"))
        );
        assert!(
            SequenceModelConfig::new(3, 5, 2)
                .with_dropout(1.0)
                .check()
                .is_err()
        );
    }
}
