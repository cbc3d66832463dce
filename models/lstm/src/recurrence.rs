//! What LSTM and GRU share: PyTorch-shaped parameters, the batched input projection, time
//! reversal, and the masks that stop the state at each sequence's last real step.

use burn::module::Param;
use burn::nn::Initializer;
use burn::tensor::{Device, Tensor, TensorData};
use kiln_common::autocast::{matmul, matmul_prepared, operand};

/// One direction's parameters, PyTorch-shaped: `gates` blocks of `d_hidden` rows each.
pub type Params = (
    Param<Tensor<2>>,
    Param<Tensor<2>>,
    Param<Tensor<1>>,
    Param<Tensor<1>>,
);

/// PyTorch's initialisation of one direction: every parameter uniform in
/// `[-1/sqrt(H), 1/sqrt(H)]`; returns `(weight_ih, weight_hh, bias_ih, bias_hh)`.
pub fn init_params(gates: usize, d_input: usize, d_hidden: usize, device: &Device) -> Params {
    let k = 1.0 / (d_hidden as f64).sqrt();
    let init = Initializer::Uniform { min: -k, max: k };
    let rows = gates * d_hidden;
    (
        init.init([rows, d_input], device),
        init.init([rows, d_hidden], device),
        init.init([rows], device),
        init.init([rows], device),
    )
}

/// A one-direction state `[batch, d_hidden]` as `[1, batch, d_hidden]`. Burn 0.22.1's
/// `reshape` reads a 0 in the new shape as "keep this dimension", so `unsqueeze_dim` turns an
/// empty batch `[0, H]` into `[1, H, H]` and fails: an empty batch's state is made directly.
pub fn one_direction(state: Tensor<2>) -> Tensor<3> {
    match state.dims() {
        [0, d_hidden] => Tensor::zeros([1, 0, d_hidden], &state.device()),
        _ => state.unsqueeze_dim(0),
    }
}

/// One direction's parameter values for a forward pass.
pub struct Direction {
    pub weight_ih: Tensor<2>,
    pub weight_hh: Tensor<2>,
    pub bias_ih: Tensor<1>,
    pub bias_hh: Tensor<1>,
}

impl Direction {
    /// Panics, naming the shapes, on an input the layer `name` cannot run: no steps (as
    /// PyTorch's RNNs refuse), or another feature count than the weights take (the fused
    /// kernel would read them with the wrong stride).
    pub fn check_input(&self, name: &str, x: [usize; 3]) {
        let [rows, d_input] = self.weight_ih.dims();
        assert!(
            x[1] > 0,
            "{name}: the input {x:?} ([batch, seq, d_input]) has no steps; a sequence needs at \
             least one"
        );
        assert_eq!(
            x[2], d_input,
            "{name}: the input {x:?} ([batch, seq, d_input]) has {} features, the weight_ih \
             [{rows}, {d_input}] takes {d_input}",
            x[2]
        );
    }

    pub fn new(
        p: (
            &Param<Tensor<2>>,
            &Param<Tensor<2>>,
            &Param<Tensor<1>>,
            &Param<Tensor<1>>,
        ),
    ) -> Self {
        Self {
            weight_ih: p.0.val(),
            weight_hh: p.1.val(),
            bias_ih: p.2.val(),
            bias_hh: p.3.val(),
        }
    }

    /// `x_t W_ih^T + b_ih`, all gates in one product.
    ///
    /// # Shapes
    /// - x_t: `[batch, d_input]`
    /// - output: `[batch, gates * d_hidden]`
    pub fn project_input_step(&self, x_t: Tensor<2>) -> Tensor<2> {
        matmul(x_t, self.weight_ih.clone().transpose()) + self.bias_ih.clone().unsqueeze()
    }

    /// The step function's one matrix product: `[x_t, h] [W_ih | W_hh]^T + b_ih + b_hh`, all
    /// gates at once. `stacked` is [`stacked_weights`](Self::stacked_weights).
    ///
    /// # Shapes
    /// - x_t: `[batch, d_input]`, h: `[batch, d_hidden]`
    /// - output: `[batch, gates * d_hidden]`
    pub fn project_step(
        &self,
        stacked: &Tensor<2>,
        bias: &Tensor<2>,
        x_t: Tensor<2>,
        h: Tensor<2>,
    ) -> Tensor<2> {
        matmul_prepared(Tensor::cat(vec![x_t, h], 1), stacked.clone()) + bias.clone()
    }

    /// `[W_ih | W_hh]^T`, `[d_input + d_hidden, gates * d_hidden]`, and `b_ih + b_hh` as
    /// `[1, gates * d_hidden]`: built once per sequence. The stacked weight is made an operand
    /// of the precision's products here ([`operand`]: cast to float16, or rounded to bf16),
    /// once per sequence, not at every step's product (PyTorch's autocast keeps its cast
    /// weights for the forward pass the same way); its gradient is summed over the steps in
    /// that format and reaches the float32 weights through the one conversion.
    pub fn stacked_weights(&self) -> (Tensor<2>, Tensor<2>) {
        let stacked =
            Tensor::cat(vec![self.weight_ih.clone(), self.weight_hh.clone()], 1).transpose();
        let stacked = operand(stacked);
        let bias = (self.bias_ih.clone() + self.bias_hh.clone()).unsqueeze();
        (stacked, bias)
    }

    /// `h W_hh^T + b_hh`, all gates in one product.
    ///
    /// # Shapes
    /// - h: `[batch, d_hidden]`
    /// - output: `[batch, gates * d_hidden]`
    pub fn project_hidden(&self, h: Tensor<2>) -> Tensor<2> {
        matmul(h, self.weight_hh.clone().transpose()) + self.bias_hh.clone().unsqueeze()
    }
}

/// Per-step masks for sequences of different `lengths`: step `t` of sequence `b` is 1 when
/// `t < lengths[b]`. `None` when every sequence fills the whole length.
///
/// # Shapes
/// - output: `seq` tensors of `[batch, 1]`
pub fn step_masks(
    lengths: Option<&[usize]>,
    seq: usize,
    device: &Device,
) -> Option<Vec<Tensor<2>>> {
    let lengths = lengths?;
    let batch = lengths.len();
    Some(
        (0..seq)
            .map(|t| {
                let m: Vec<f32> = lengths
                    .iter()
                    .map(|&l| if t < l { 1.0 } else { 0.0 })
                    .collect();
                Tensor::from_data(TensorData::new(m, [batch, 1]), device)
            })
            .collect(),
    )
}

/// `new` where the mask is 1, `old` where it is 0: padded steps leave the state unchanged.
pub fn keep_where(mask: Option<&Tensor<2>>, new: Tensor<2>, old: Tensor<2>) -> Tensor<2> {
    match mask {
        Some(m) => old.clone() + (new - old) * m.clone(),
        None => new,
    }
}

/// The `i`-th block of `d_hidden` columns.
pub fn gate(gates: &Tensor<2>, i: usize, d_hidden: usize) -> Tensor<2> {
    gates.clone().narrow(1, i * d_hidden, d_hidden)
}

/// Stacks per-step outputs `[batch, d_hidden]` (in step order) into `[batch, seq, d_hidden]`.
pub fn stack_steps(steps: Vec<Tensor<2>>) -> Tensor<3> {
    Tensor::stack(steps, 1)
}

/// Declares a recurrent layer's config and module with PyTorch's parameter names
/// (`weight_ih_l0`, ..., `*_reverse` when bidirectional), their initialisation, and the helpers
/// both cells share. Each cell then writes only its step function.
macro_rules! pytorch_layer {
    ($(#[$cfg_doc:meta])* $config:ident, $(#[$doc:meta])* $layer:ident, gates = $gates:expr) => {
        $(#[$cfg_doc])*
        #[derive(burn::config::Config, Debug)]
        pub struct $config {
            /// Features per time step.
            pub d_input: usize,
            /// Size of the hidden state.
            pub d_hidden: usize,
            /// Also run the sequence backwards and concatenate both directions' outputs.
            /// Default: off.
            #[config(default = false)]
            pub bidirectional: bool,
        }

        impl $config {
            /// A layer with PyTorch's initialisation on `device`: every weight uniform in `±1/sqrt(d_hidden)`.
            pub fn init(&self, device: &burn::tensor::Device) -> $layer {
                let init = || crate::recurrence::init_params($gates, self.d_input, self.d_hidden, device);
                let (weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0) = init();
                let (weight_ih_l0_reverse, weight_hh_l0_reverse, bias_ih_l0_reverse, bias_hh_l0_reverse) =
                    match self.bidirectional.then(init) {
                        Some((a, b, c, d)) => (Some(a), Some(b), Some(c), Some(d)),
                        None => (None, None, None, None),
                    };
                $layer {
                    weight_ih_l0,
                    weight_hh_l0,
                    bias_ih_l0,
                    bias_hh_l0,
                    weight_ih_l0_reverse,
                    weight_hh_l0_reverse,
                    bias_ih_l0_reverse,
                    bias_hh_l0_reverse,
                    d_hidden: self.d_hidden,
                }
            }
        }

        $(#[$doc])*
        #[derive(burn::module::Module, Debug)]
        pub struct $layer {
            /// Input-to-hidden weights of the gates, stacked, `[gates * d_hidden, d_input]`.
            pub weight_ih_l0: burn::module::Param<burn::tensor::Tensor<2>>,
            /// Hidden-to-hidden weights of the gates, stacked, `[gates * d_hidden, d_hidden]`.
            pub weight_hh_l0: burn::module::Param<burn::tensor::Tensor<2>>,
            /// Input-to-hidden biases, `[gates * d_hidden]`.
            pub bias_ih_l0: burn::module::Param<burn::tensor::Tensor<1>>,
            /// Hidden-to-hidden biases, `[gates * d_hidden]`.
            pub bias_hh_l0: burn::module::Param<burn::tensor::Tensor<1>>,
            /// The backward direction's `weight_ih_l0`, when bidirectional.
            pub weight_ih_l0_reverse: Option<burn::module::Param<burn::tensor::Tensor<2>>>,
            /// The backward direction's `weight_hh_l0`, when bidirectional.
            pub weight_hh_l0_reverse: Option<burn::module::Param<burn::tensor::Tensor<2>>>,
            /// The backward direction's `bias_ih_l0`, when bidirectional.
            pub bias_ih_l0_reverse: Option<burn::module::Param<burn::tensor::Tensor<1>>>,
            /// The backward direction's `bias_hh_l0`, when bidirectional.
            pub bias_hh_l0_reverse: Option<burn::module::Param<burn::tensor::Tensor<1>>>,
            #[module(skip)]
            /// Size of the hidden state.
            pub d_hidden: usize,
        }

        impl $layer {
            /// Whether the layer runs both directions.
            pub fn is_bidirectional(&self) -> bool {
                self.weight_ih_l0_reverse.is_some()
            }

            /// Width of each output step: `d_hidden`, doubled when bidirectional.
            pub fn d_output(&self) -> usize {
                self.d_hidden * if self.is_bidirectional() { 2 } else { 1 }
            }

            /// The forward direction's parameters, and the backward one's when bidirectional.
            fn directions(&self) -> (crate::recurrence::Direction, Option<crate::recurrence::Direction>) {
                use crate::recurrence::Direction;
                let forward = Direction::new((&self.weight_ih_l0, &self.weight_hh_l0, &self.bias_ih_l0, &self.bias_hh_l0));
                let backward = match (
                    &self.weight_ih_l0_reverse,
                    &self.weight_hh_l0_reverse,
                    &self.bias_ih_l0_reverse,
                    &self.bias_hh_l0_reverse,
                ) {
                    (Some(a), Some(b), Some(c), Some(d)) => Some(Direction::new((a, b, c, d))),
                    _ => None,
                };
                (forward, backward)
            }
        }
    };
}

pub(crate) use pytorch_layer;
