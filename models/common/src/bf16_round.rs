//! Rounding to bfloat16 as an operation of the autodiff graph, for the products Burn computes
//! under [`Precision::Bf16`](crate::Precision::Bf16) ([`crate::autocast`]): a product of
//! operands rounded by [`operand`] and summed in float32 is the product of bf16 values with f32
//! sums, as kiln's fused kernels compute it (two bf16 values multiply exactly in f32), and
//! [`result`] rounds the gradient that reaches the product, so that its backward products take
//! bf16 operands too. The rounding is [`to_bf16`](crate::amx::to_bf16)'s (to nearest, ties to
//! even), done on the host: bf16 products are the CPU backends' (flex, ndarray).

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::backend_extension;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata};
use burn::tensor::Tensor;

use crate::kernel::{host_tensor, host_values};

/// Which pass of [`RoundBf16Backend::round_bf16`] rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounded {
    /// The values, forward; the gradient passes as it is.
    Values,
    /// The gradient, backward; the values pass as they are.
    Gradient,
}

/// Rounding to bf16, routed by Burn to the backend of its input.
#[backend_extension(Flex: cfg(feature = "flex"), NdArray: cfg(feature = "ndarray"), Autodiff)]
pub trait RoundBf16Backend: Backend {
    /// `t` with its values rounded to the nearest bf16 (`Rounded::Values`), or as it is
    /// (`Rounded::Gradient`, whose rounding is the backward pass's).
    ///
    /// # Shapes
    /// - t: any
    /// - output: `t`'s
    fn round_bf16(t: FloatTensor<Self>, rounded: Rounded) -> FloatTensor<Self> {
        match rounded {
            Rounded::Values => round_on_host::<Self>(t),
            Rounded::Gradient => t,
        }
    }
}

#[cfg(feature = "flex")]
impl RoundBf16Backend for burn::backend::Flex {}

#[cfg(feature = "ndarray")]
impl RoundBf16Backend for burn::backend::NdArray {}

/// `t`'s values rounded to the nearest bf16, on the host.
fn round_on_host<B: Backend>(t: FloatTensor<B>) -> FloatTensor<B> {
    let (device, shape) = (t.device(), t.shape().to_vec());
    let mut values = host_values::<B>(t);
    crate::amx::round_all(&mut values);
    host_tensor::<B>(values, &shape, &device)
}

/// `t` as a bf16 operand: its values rounded, its gradient passed through unchanged (a
/// product's gradient for its operand, as a cast's backward pass gives it).
///
/// # Shapes
/// - t: any; output: the same
pub fn operand<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    round(t, Rounded::Values)
}

/// A product's result `t` as it is, the gradient that reaches it rounded to bf16: the
/// backward products (`dX = dY W^T`, `dW = X^T dY`) then take bf16 operands, as the fused
/// kernels' do.
///
/// # Shapes
/// - t: any; output: the same
pub fn result<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    round(t, Rounded::Gradient)
}

fn round<const D: usize>(t: Tensor<D>, rounded: Rounded) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as RoundBf16Backend>::round_bf16(
        t.into_dispatch(),
        rounded,
    ))
}

#[derive(Debug)]
struct RoundBackward {
    rounded: Rounded,
}

impl<B: Backend> Backward<B, 1> for RoundBackward {
    type State = ();

    fn backward(self, ops: Ops<(), 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let [parent] = ops.parents;
        if let Some(parent) = parent {
            let grad = match self.rounded {
                Rounded::Values => grad,
                Rounded::Gradient => round_on_host::<B>(grad),
            };
            grads.register::<B>(parent.id, grad);
        }
    }
}

impl<B: Backend + RoundBf16Backend, C: CheckpointStrategy> RoundBf16Backend for Autodiff<B, C> {
    fn round_bf16(t: FloatTensor<Self>, rounded: Rounded) -> FloatTensor<Self> {
        let node = t.node();
        let output = B::round_bf16(t.into_primitive(), rounded);
        RoundBackward { rounded }
            .prepare::<C>([node])
            .compute_bound()
            .stateless(output)
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::amx::round_bf16;
    use burn::tensor::{Device, TensorData};

    /// Forward, `operand` rounds each value as `round_bf16` does and `result` leaves it;
    /// backward, `operand` passes the gradient and `result` rounds it.
    #[test]
    fn operand_rounds_values_and_result_rounds_gradients() {
        let device = Device::flex().autodiff();
        let raw = [
            1.0f32 + 2f32.powi(-9),
            2.718_281_7e-3,
            -0.1,
            1e-3,
            0.0,
            65_537.0,
        ];
        let rounded: Vec<f32> = raw.iter().map(|&v| round_bf16(v)).collect();
        assert_ne!(rounded, raw, "the values are not all bf16 already");
        let tensor = || {
            Tensor::<1>::from_data(TensorData::new(raw.to_vec(), [raw.len()]), &device)
                .require_grad()
        };
        let host = |t: Tensor<1>| t.into_data().iter::<f32>().collect::<Vec<_>>();
        let upstream =
            || Tensor::<1>::from_data(TensorData::new(raw.to_vec(), [raw.len()]), &device);

        let raw = raw.to_vec();
        type Op = fn(Tensor<1>) -> Tensor<1>;
        let cases: [(&str, Op, &Vec<f32>, &Vec<f32>); 2] = [
            ("operand", operand, &rounded, &raw),
            ("result", result, &raw, &rounded),
        ];
        for (name, op, values, gradient) in cases {
            let x = tensor();
            let out = op(x.clone());
            assert_eq!(&host(out.clone()), values, "{name}: values");
            let grads = (out * upstream()).sum().backward();
            assert_eq!(&host(x.grad(&grads).unwrap()), gradient, "{name}: gradient");
        }
    }
}
