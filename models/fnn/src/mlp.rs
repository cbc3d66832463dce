use burn::config::Config;
use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use kiln_common::dense::dense;
use kiln_common::{Activation, Dropout, DropoutConfig, Layer, LayerActivations, Model};

/// A hyper-parameter of [`MlpConfig`] that cannot work, found by [`MlpConfig::check`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MlpConfigError {
    #[error("d_input must be at least 1, got {0}")]
    /// `d_input` is 0.
    NoInput(usize),
    #[error("d_output must be at least 1, got {0}")]
    /// `d_output` is 0.
    NoOutput(usize),
    /// A hidden layer has no units.
    #[error("hidden layer {layer} has 0 units; every hidden layer needs at least 1")]
    EmptyHidden {
        /// The layer (from 0).
        layer: usize,
    },
    #[error("dropout must lie in [0, 1), got {0}")]
    /// A dropout probability outside [0, 1).
    Dropout(f64),
}

/// Configuration of a multi-layer perceptron.
///
/// ```text
/// x -> [Linear -> (BatchNorm) -> activation -> (Dropout)] x hidden.len() -> Linear -> output
/// ```
///
/// The output layer has no activation: it gives logits for classification (the loss applies
/// the softmax or sigmoid) and raw values for regression.
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use kiln_fnn::MlpConfig;
///
/// let device = Device::flex();
/// let config = MlpConfig::new(64, vec![128, 64], 10).with_dropout(0.2);
/// config.check()?; // hyper-parameters checked once, into a typed error
/// let mlp = config.init(&device);
/// let logits = mlp.forward(Tensor::zeros([32, 64], &device));
/// assert_eq!(logits.dims(), [32, 10]);
/// # Ok::<(), kiln_fnn::MlpConfigError>(())
/// ```
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Number of input features.
    pub d_input: usize,
    /// Width of each hidden layer, first to last; empty gives a linear model.
    pub hidden: Vec<usize>,
    /// Number of outputs: classes (logits), 1 for binary logit or single-value regression.
    pub d_output: usize,
    /// Activation of the hidden layers. Default: ReLU.
    #[config(default = "Activation::Relu")]
    pub activation: Activation,
    /// Dropout probability after each hidden layer, active in training only. Default: 0.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Batch normalisation after each hidden layer's linear map. Default: off.
    #[config(default = false)]
    pub batch_norm: bool,
}

impl MlpConfig {
    /// Checks every hyper-parameter, once, up front.
    pub fn check(&self) -> Result<(), MlpConfigError> {
        if self.d_input == 0 {
            return Err(MlpConfigError::NoInput(self.d_input));
        }
        if self.d_output == 0 {
            return Err(MlpConfigError::NoOutput(self.d_output));
        }
        if let Some(layer) = self.hidden.iter().position(|&h| h == 0) {
            return Err(MlpConfigError::EmptyHidden { layer });
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(MlpConfigError::Dropout(self.dropout));
        }
        Ok(())
    }

    /// Builds the network with freshly initialised weights.
    ///
    /// # Panics
    /// If [`check`](Self::check) fails; call it first to get the error as a value.
    pub fn init(&self, device: &Device) -> Mlp {
        if let Err(e) = self.check() {
            panic!("invalid MlpConfig: {e}");
        }
        let widths: Vec<usize> = std::iter::once(self.d_input)
            .chain(self.hidden.iter().copied())
            .collect();
        let hidden = widths
            .windows(2)
            .map(|w| DenseBlock {
                linear: LinearConfig::new(w[0], w[1]).init(device),
                norm: self
                    .batch_norm
                    .then(|| BatchNormConfig::new(w[1]).init(device)),
                activation: self.activation,
                dropout: DropoutConfig::new(self.dropout).init(),
            })
            .collect();
        let last = *widths.last().expect("widths starts with d_input");
        Mlp {
            hidden,
            output: LinearConfig::new(last, self.d_output).init(device),
        }
    }

    /// Number of parameters the network will have, counted as Keras's `summary` and Burn's
    /// `num_params` count them: weights and biases of every linear layer, plus four per batch
    /// norm unit (trainable scale and shift, and the running mean and variance it tracks).
    pub fn num_params(&self) -> usize {
        let widths: Vec<usize> = std::iter::once(self.d_input)
            .chain(self.hidden.iter().copied())
            .chain([self.d_output])
            .collect();
        let linear: usize = widths.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
        let norm: usize = if self.batch_norm {
            self.hidden.iter().map(|h| 4 * h).sum()
        } else {
            0
        };
        linear + norm
    }
}

/// One hidden layer of an [`Mlp`]: linear map, optional batch norm, activation, dropout.
#[derive(Module, Debug)]
pub struct DenseBlock {
    /// The layer's linear map.
    pub linear: Linear,
    /// Batch normalisation, if configured.
    pub norm: Option<BatchNorm>,
    #[module(skip)]
    /// The activation.
    pub activation: Activation,
    /// Dropout after the activation.
    pub dropout: Dropout,
}

impl DenseBlock {
    /// # Shapes
    /// - x: `[batch, d_in]`
    /// - output: `[batch, d_out]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        match &self.norm {
            // The linear map alone fused (in the run's precision), the normalisation between
            // it and the activation.
            Some(norm) => {
                let x = norm.forward(dense(&self.linear, x, None, None));
                self.dropout.forward(self.activation.forward(x))
            }
            // One fused operation on the CPU backends.
            None => dense(&self.linear, x, Some(self.activation), Some(&self.dropout)),
        }
    }

    /// The block's output for `x` in inference mode, and what its activation received.
    ///
    /// # Shapes
    /// - x: `[batch, d_in]`
    /// - output: `[batch, d_out]`, and the pre-activations `[batch, d_out]`
    pub fn activations(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let pre = self.linear.forward(x);
        let pre = match &self.norm {
            Some(norm) => norm.forward(pre),
            None => pre,
        };
        (self.activation.forward(pre.clone()), pre)
    }

    /// The block's rows in a model summary, for the input `x` (one sample), and its output.
    pub fn layers(&self, x: Tensor<2>) -> (Tensor<2>, Vec<Layer>) {
        let x = self.linear.forward(x);
        let kind = format!("Linear, {}", self.activation.name());
        let mut rows = vec![Layer::new("linear", kind, &self.linear, &x)];
        let x = match &self.norm {
            Some(norm) => {
                let x = norm.forward(x);
                rows.push(Layer::new("norm", "BatchNorm", norm, &x));
                x
            }
            None => x,
        };
        if self.dropout.prob > 0.0 {
            let kind = format!("Dropout {}", self.dropout.prob);
            rows.push(Layer::new("dropout", kind, &self.dropout, &x));
        }
        (x, rows)
    }
}

/// A multi-layer perceptron; see [`MlpConfig`].
#[derive(Module, Debug)]
pub struct Mlp {
    /// The hidden layers, in order.
    pub hidden: Vec<DenseBlock>,
    /// The output layer (no activation: logits or values).
    pub output: Linear,
}

impl Mlp {
    /// # Shapes
    /// - x: `[batch, d_input]`
    /// - output: `[batch, d_output]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = self.hidden.iter().fold(x, |x, block| block.forward(x));
        dense(&self.output, x, None, None)
    }

    /// The rows of a model summary for the input `x` (one sample, `[1, d_input]`).
    pub fn layers_from(&self, mut x: Tensor<2>) -> Vec<Layer> {
        let mut rows = Vec::new();
        for (i, block) in self.hidden.iter().enumerate() {
            let (out, block_rows) = block.layers(x);
            x = out;
            let prefix = format!("hidden.{i}");
            rows.extend(block_rows.into_iter().map(|r| r.within(&prefix)));
        }
        let x = self.output.forward(x);
        rows.push(Layer::new("output", "Linear", &self.output, &x));
        rows
    }
}

impl Model for Mlp {
    type Input = Tensor<2>;

    fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        Mlp::forward(self, input)
    }

    fn layers(&self, sample_shape: &[usize]) -> Vec<Layer> {
        let d_input = sample_shape.iter().product();
        let device = self.output.weight.device();
        self.valid()
            .layers_from(Tensor::zeros([1, d_input], &device))
    }

    /// Each hidden layer's pre-activations (`hidden.0`, ...).
    fn activations(&self, input: Tensor<2>) -> Vec<LayerActivations> {
        self.hidden_activations(input).1
    }
}

impl Mlp {
    /// The output of the last hidden layer for `x` in inference mode, and what each hidden
    /// layer's activation received.
    ///
    /// # Shapes
    /// - x: `[batch, d_input]`
    /// - output: `[batch, last hidden width]`, and per layer `[batch, its width]`
    pub fn hidden_activations(&self, x: Tensor<2>) -> (Tensor<2>, Vec<LayerActivations>) {
        let mut layers = Vec::new();
        let mut x = x;
        for (i, block) in self.hidden.iter().enumerate() {
            let (out, pre) = block.activations(x);
            layers.push(LayerActivations {
                layer: format!("hidden.{i}"),
                activation: block.activation,
                pre,
            });
            x = out;
        }
        (x, layers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::tensor::{Distribution, TensorData};

    fn config() -> MlpConfig {
        MlpConfig::new(784, vec![128, 64], 10)
    }

    #[test]
    fn activations_are_each_hidden_layers_affine_map_on_the_forward_path() {
        let device = Device::flex();
        let mlp = MlpConfig::new(6, vec![5, 4], 3)
            .with_activation(Activation::Tanh)
            .init(&device);
        let x = Tensor::<2>::random([7, 6], Distribution::Default, &device);
        let layers = Model::activations(&mlp, x.clone());
        let names: Vec<&str> = layers.iter().map(|l| l.layer.as_str()).collect();
        assert_eq!(names, ["hidden.0", "hidden.1"]);
        assert_eq!(layers[1].activation, Activation::Tanh);
        let first = mlp.hidden[0].linear.forward(x.clone());
        let gap: f32 = (layers[0].pre.clone() - first).abs().max().into_scalar();
        assert!(gap < 1e-6, "{gap}");
        let (last, _) = mlp.hidden_activations(x.clone());
        let out = mlp.output.forward(last);
        let gap: f32 = (out - mlp.forward(x)).abs().max().into_scalar();
        assert!(gap < 1e-5, "{gap}");
    }

    #[test]
    fn output_has_one_row_per_sample_and_d_output_columns() {
        let device = Device::flex();
        let mlp = config().init(&device);
        let x = Tensor::<2>::random([5, 784], Distribution::Default, &device);
        assert_eq!(mlp.forward(x).dims(), [5, 10]);
    }

    #[test]
    fn parameter_count_matches_hand_computation() {
        // 784*128+128 + 128*64+64 + 64*10+10 = 100480 + 8256 + 650.
        let device = Device::flex();
        assert_eq!(config().num_params(), 109_386);
        assert_eq!(config().init(&device).num_params(), 109_386);
        let bn = config().with_batch_norm(true);
        assert_eq!(bn.num_params(), 109_386 + 4 * (128 + 64));
        assert_eq!(bn.init(&device).num_params(), bn.num_params());
    }

    #[test]
    fn bad_hyper_parameters_are_typed_errors() {
        assert_eq!(
            MlpConfig::new(4, vec![8, 0], 2).check(),
            Err(MlpConfigError::EmptyHidden { layer: 1 })
        );
        assert_eq!(
            MlpConfig::new(4, vec![], 2).with_dropout(1.0).check(),
            Err(MlpConfigError::Dropout(1.0))
        );
        assert!(MlpConfig::new(0, vec![], 2).check().is_err());
    }

    #[test]
    fn dropout_is_active_in_training_and_absent_in_evaluation() {
        let device = Device::flex().autodiff();
        let mlp = MlpConfig::new(32, vec![256], 4)
            .with_dropout(0.5)
            .init(&device);
        let x = Tensor::<2>::random([8, 32], Distribution::Default, &device);

        let a = mlp
            .forward(x.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let b = mlp
            .forward(x.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_ne!(a, b, "two training passes draw different dropout masks");

        let eval = mlp.valid();
        let x = x.without_autodiff();
        let c = eval
            .forward(x.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let d = eval.forward(x).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(c, d, "evaluation is deterministic");
    }

    #[test]
    fn gradients_match_finite_differences() {
        let device = Device::flex().autodiff();
        let mlp = MlpConfig::new(3, vec![4], 2)
            .with_activation(Activation::Tanh)
            .init(&device);
        let x = Tensor::<2>::from_floats([[0.5, -1.0, 2.0], [1.5, 0.3, -0.7]], &device);
        let loss = |m: &Mlp| {
            let y = m.forward(x.clone());
            (y.clone() * y).sum() / 2.0
        };

        let l = loss(&mlp);
        let grads = l.backward();
        let analytic: Vec<f32> = mlp.hidden[0]
            .linear
            .weight
            .grad(&grads)
            .expect("the first layer's weight has a gradient")
            .into_data()
            .try_to_vec()
            .unwrap();

        let w: Vec<f32> = mlp.hidden[0]
            .linear
            .weight
            .val()
            .into_data()
            .try_to_vec()
            .unwrap();
        let eps = 1e-2;
        for i in 0..w.len() {
            let at = |delta: f32| {
                let mut w2 = w.clone();
                w2[i] += delta;
                let mut m = mlp.clone();
                m.hidden[0].linear.weight =
                    Param::from_tensor(Tensor::from_data(TensorData::new(w2, [3, 4]), &device));
                loss(&m).into_scalar::<f32>()
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            assert!(
                (numeric - analytic[i]).abs() < 2e-3 * (1.0 + numeric.abs()),
                "weight {i}: finite difference {numeric} vs backprop {}",
                analytic[i]
            );
        }
    }

    #[test]
    fn the_summary_of_the_mnist_mlp_counts_109386_parameters() {
        let device = Device::flex();
        let mlp = MlpConfig::new(784, vec![128, 64], 10)
            .with_dropout(0.2)
            .init(&device);
        let s = kiln_common::summary(&mlp, &[784]);
        // 784*128 + 128 = 100,480; 128*64 + 64 = 8,256; 64*10 + 10 = 650.
        let rows: Vec<(&str, Vec<usize>, usize)> = s
            .layers
            .iter()
            .map(|l| (l.name.as_str(), l.output.clone(), l.params))
            .collect();
        assert_eq!(
            rows,
            [
                ("hidden.0.linear", vec![128], 100_480),
                ("hidden.0.dropout", vec![128], 0),
                ("hidden.1.linear", vec![64], 8_256),
                ("hidden.1.dropout", vec![64], 0),
                ("output", vec![10], 650),
            ]
        );
        assert_eq!((s.total, s.trainable), (109_386, 109_386));
        assert_eq!(s.bytes, 109_386 * 4);
        let text = s.to_string();
        assert!(text.contains("Total params: 109,386 (427.29 KB)"), "{text}");
        assert!(text.contains("hidden.0.linear (Linear, relu)"), "{text}");
    }
}
