//! The whole LSTM sequence as one operation, with a hand-written backward pass (backpropagation
//! through time), for the CPU backends.
//!
//! Composed from tensor operations, one LSTM step records about twenty nodes in Burn's autodiff
//! graph, each with its own bookkeeping, buffers and scalar `expf`/`tanhf` calls; on a CPU that
//! overhead, not the arithmetic, dominates small layers. This operation records one node. Its
//! forward and backward passes (`cpu_kernel.rs`) run on host memory, like cuDNN's and PyTorch's
//! kernels: every step's input projection in one matrix product, one `[batch, H] x [H, 4H]`
//! product per step, the gates' activations in one vectorised pass, and on the way back one
//! product per step for the hidden state's gradient and one over all steps for each weight. The
//! batch is split across threads, each running the whole time loop for its samples (their
//! recurrences are independent), so the steps need no synchronisation.
//!
//! It is compiled for the backends whose cargo feature is on (`flex`, `ndarray`, forwarded by the
//! `kiln` facade); [`applies_to`] says whether an input can use it. Other backends (wgpu, whose
//! fusion already merges the small kernels) and sequences of different lengths use the composed
//! step function in `lstm.rs`, which computes the same values.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::backend_extension;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata};
use burn::tensor::{DType, Tensor};
use std::sync::Arc;

use kiln_common::kernel::{host_tensor, host_values, on_host};

use crate::cpu_kernel::{self, Dims};

/// The fused LSTM sequence, routed by Burn to the backend of its inputs.
#[backend_extension(Flex: cfg(feature = "flex"), NdArray: cfg(feature = "ndarray"), Autodiff)]
pub trait LstmBackend: Backend {
    /// Runs one LSTM direction over the whole sequence from a zero state.
    ///
    /// # Shapes
    /// - x: `[batch, seq, d_input]`
    /// - weight_ih: `[4H, d_input]`, weight_hh: `[4H, H]`, bias_ih and bias_hh: `[4H]`
    /// - output: `[batch, seq, 2H]`: each step's `h` then its `c`
    fn lstm_sequence(
        x: FloatTensor<Self>,
        weight_ih: FloatTensor<Self>,
        weight_hh: FloatTensor<Self>,
        bias_ih: FloatTensor<Self>,
        bias_hh: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        // The plain CPU backends: the forward pass alone (autodiff overrides this).
        forward::<Self>(x, weight_ih, weight_hh, bias_ih, bias_hh).0
    }
}

#[cfg(feature = "flex")]
impl LstmBackend for burn::backend::Flex {}

#[cfg(feature = "ndarray")]
impl LstmBackend for burn::backend::NdArray {}

/// Whether `x` can take the fused path: f32 values on a backend compiled in with kiln-lstm's
/// matching feature.
pub fn applies_to(x: &Tensor<3>) -> bool {
    x.dtype() == DType::F32 && on_host(&x.device())
}

/// The fused sequence on tensors; call only where [`applies_to`] is true, with an input of at
/// least one step and the weights' feature count ([`Lstm::forward`](crate::Lstm::forward)
/// checks both).
///
/// # Shapes
/// - x: `[batch, seq, d_input]`
/// - output: `[batch, seq, 2H]`: each step's `h` then its `c`
pub fn lstm_sequence(
    x: Tensor<3>,
    weight_ih: Tensor<2>,
    weight_hh: Tensor<2>,
    bias_ih: Tensor<1>,
    bias_hh: Tensor<1>,
) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as LstmBackend>::lstm_sequence(
        x.into_dispatch(),
        weight_ih.into_dispatch(),
        weight_hh.into_dispatch(),
        bias_ih.into_dispatch(),
        bias_hh.into_dispatch(),
    ))
}

/// What the backward pass needs from the forward one, on the host.
#[derive(Debug, Clone)]
struct Saved {
    dims: Dims,
    x: Arc<Vec<f32>>,
    weight_ih: Arc<Vec<f32>>,
    weight_hh: Arc<Vec<f32>>,
    forward: Arc<cpu_kernel::Forward>,
}

/// The forward pass: the packed `[batch, seq, 2H]` output, and what backward needs.
fn forward<B: Backend>(
    x: FloatTensor<B>,
    weight_ih: FloatTensor<B>,
    weight_hh: FloatTensor<B>,
    bias_ih: FloatTensor<B>,
    bias_hh: FloatTensor<B>,
) -> (FloatTensor<B>, Saved) {
    let [batch, seq, d_input] = x.shape().to_vec()[..] else {
        panic!("lstm_sequence takes x as [batch, seq, d_input]")
    };
    let hd = weight_hh.shape()[1];
    let dims = Dims {
        batch,
        seq,
        d_input,
        hd,
    };
    let device = x.device();
    let bias = host_values::<B>(B::float_add(bias_ih, bias_hh));
    let (x, weight_ih, weight_hh) = (
        host_values::<B>(x),
        host_values::<B>(weight_ih),
        host_values::<B>(weight_hh),
    );
    let forward = cpu_kernel::forward(dims, &x, &weight_ih, &weight_hh, &bias);
    let output = host_tensor::<B>(forward.h_c.clone(), &[batch, seq, 2 * hd], &device);
    let saved = Saved {
        dims,
        x: Arc::new(x),
        weight_ih: Arc::new(weight_ih),
        weight_hh: Arc::new(weight_hh),
        forward: Arc::new(forward),
    };
    (output, saved)
}

/// Gradients of `[x, weight_ih, weight_hh, bias_ih, bias_hh]` from the packed output's; `x`'s
/// only when `need_x`.
fn backward<B: Backend>(
    saved: Saved,
    grad: FloatTensor<B>,
    need_x: bool,
) -> [Option<FloatTensor<B>>; 5] {
    let device = grad.device();
    let Dims {
        batch,
        seq,
        d_input,
        hd,
    } = saved.dims;
    let grad = host_values::<B>(grad);
    let [d_x, d_w_ih, d_w_hh, d_bias] = cpu_kernel::backward(
        saved.dims,
        &saved.forward,
        (&saved.x, &saved.weight_ih, &saved.weight_hh),
        &grad,
        need_x,
    );
    let d_bias = host_tensor::<B>(d_bias, &[4 * hd], &device);
    [
        need_x.then(|| host_tensor::<B>(d_x, &[batch, seq, d_input], &device)),
        Some(host_tensor::<B>(d_w_ih, &[4 * hd, d_input], &device)),
        Some(host_tensor::<B>(d_w_hh, &[4 * hd, hd], &device)),
        Some(d_bias.clone()),
        Some(d_bias),
    ]
}

#[derive(Debug)]
struct LstmSequenceBackward;

impl<B: Backend> Backward<B, 5> for LstmSequenceBackward {
    type State = Saved;

    fn backward(
        self,
        ops: Ops<Self::State, 5>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let parents = ops.parents;
        let need_x = parents[0].is_some();
        for (parent, grad) in parents
            .into_iter()
            .zip(backward::<B>(ops.state, grad, need_x))
        {
            if let (Some(node), Some(grad)) = (parent, grad) {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: Backend + LstmBackend, C: CheckpointStrategy> LstmBackend for Autodiff<B, C> {
    fn lstm_sequence(
        x: FloatTensor<Self>,
        weight_ih: FloatTensor<Self>,
        weight_hh: FloatTensor<Self>,
        bias_ih: FloatTensor<Self>,
        bias_hh: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [
            x.node(),
            weight_ih.node(),
            weight_hh.node(),
            bias_ih.node(),
            bias_hh.node(),
        ];
        let inputs = (
            x.into_primitive(),
            weight_ih.into_primitive(),
            weight_hh.into_primitive(),
            bias_ih.into_primitive(),
            bias_hh.into_primitive(),
        );
        match LstmSequenceBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (output, saved) =
                    forward::<B>(inputs.0, inputs.1, inputs.2, inputs.3, inputs.4);
                prep.finish(saved, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::lstm_sequence(
                inputs.0, inputs.1, inputs.2, inputs.3, inputs.4,
            )),
        }
    }
}
