//! Batch-normalised blocks under bf16 products (`Precision::Bf16`): a dense block's linear map
//! and a convolution block's convolution run in the fused kernels like every other block's, so
//! each block's output is the float32 block's on bf16-rounded inputs and weights (the products
//! of bf16 values are exact in f32; only the order of the sums differs) and not the float32
//! block's on the values as they are. A test binary of its own, its tests one at a time: the
//! precision is process-wide.
#![cfg(feature = "flex")]

use burn::module::Param;
use burn::tensor::{Device, Distribution, Tensor};
use kiln_cnn::{ConvBlockConfig, Padding, Pool};
use kiln_common::bf16_round::operand as rounded;
use kiln_common::{Activation, Precision, PrecisionScope};
use kiln_fnn::MlpConfig;
use std::sync::Mutex;

static PRECISION: Mutex<()> = Mutex::new(());

/// `forward` on `x` in f32, in bf16, and in f32 on rounded operands (`on_rounded`): bf16 equals
/// the last within the order of the sums and differs from the first.
fn assert_products_in_bf16<const D: usize>(
    forward: impl Fn(Tensor<D>) -> Tensor<D>,
    on_rounded: impl Fn(Tensor<D>) -> Tensor<D>,
    x: Tensor<D>,
) {
    let _serial = PRECISION.lock().unwrap_or_else(|e| e.into_inner());
    let host = |t: Tensor<D>| t.into_data().iter::<f32>().collect::<Vec<_>>();
    let f32_out = host(forward(x.clone()));
    let bf16_out = {
        let _bf16 = PrecisionScope::new(Precision::Bf16);
        host(forward(x.clone()))
    };
    let want = host(on_rounded(rounded(x)));
    let largest_difference = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    };
    let off = largest_difference(&bf16_out, &want);
    let moved = largest_difference(&bf16_out, &f32_out);
    eprintln!("bf16 vs rounded operands {off:e}, bf16 vs f32 {moved:e}");
    assert!(off <= 1e-5, "bf16 block off the rounded operands' by {off}");
    assert!(moved > 1e-4, "bf16 block equals the f32 one ({moved:e})");
}

#[test]
fn a_batch_normalised_dense_block_computes_its_product_in_bf16() {
    let device = Device::flex();
    device.seed(3);
    let mlp = MlpConfig::new(256, vec![64], 10)
        .with_batch_norm(true)
        .with_activation(Activation::Tanh)
        .init(&device);
    let block = mlp.hidden[0].clone();
    let mut on_rounded = block.clone();
    on_rounded.linear.weight = Param::from_tensor(rounded(block.linear.weight.val()));
    let x = Tensor::<2>::random([32, 256], Distribution::Uniform(-1.0, 1.0), &device);
    assert_products_in_bf16(|x| block.forward(x), |x| on_rounded.forward(x), x);
}

#[test]
fn a_batch_normalised_block_computes_its_convolution_in_bf16() {
    let device = Device::flex();
    device.seed(3);
    let block = ConvBlockConfig::new([8, 16])
        .with_padding(Padding::Same)
        .with_batch_norm(true)
        .with_pool(Some(Pool::Max))
        .init(&device);
    let mut on_rounded = block.clone();
    on_rounded.conv.weight = Param::from_tensor(rounded(block.conv.weight.val()));
    let x = Tensor::<4>::random([4, 8, 12, 12], Distribution::Uniform(-1.0, 1.0), &device);
    assert_products_in_bf16(|x| block.forward(x), |x| on_rounded.forward(x), x);
}
