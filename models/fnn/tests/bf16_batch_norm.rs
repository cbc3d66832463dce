//! A batch-normalised dense block under bf16 products (`Precision::Bf16`): its linear map runs
//! in the fused kernel like every other dense layer's, so the block's output is the float32
//! block's on bf16-rounded inputs and weights (the products of bf16 values are exact in f32;
//! only the order of the sums differs) and not the float32 block's on the values as they are.
//! A test binary of its own: the precision is process-wide.

use burn::module::Param;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use kiln_common::amx::round_bf16;
use kiln_common::{Activation, Precision, PrecisionScope};
use kiln_fnn::{DenseBlock, MlpConfig};

/// `t` with every value rounded to the nearest bf16.
fn rounded<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    let (device, shape) = (t.device(), t.shape());
    let values: Vec<f32> = t.into_data().iter::<f32>().map(round_bf16).collect();
    Tensor::from_data(TensorData::new(values, shape), &device)
}

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

fn largest_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn a_batch_normalised_block_computes_its_product_in_bf16() {
    let device = Device::flex();
    device.seed(3);
    let mlp = MlpConfig::new(256, vec![64], 10)
        .with_batch_norm(true)
        .with_activation(Activation::Tanh)
        .init(&device);
    let block: &DenseBlock = &mlp.hidden[0];
    let x = Tensor::<2>::random([32, 256], Distribution::Uniform(-1.0, 1.0), &device);

    let f32_out = host(block.forward(x.clone()));
    let bf16_out = {
        let _bf16 = PrecisionScope::new(Precision::Bf16);
        host(block.forward(x.clone()))
    };
    let mut on_rounded = block.clone();
    on_rounded.linear.weight = Param::from_tensor(rounded(block.linear.weight.val()));
    let want = host(on_rounded.forward(rounded(x)));

    let off = largest_difference(&bf16_out, &want);
    let moved = largest_difference(&bf16_out, &f32_out);
    eprintln!("bf16 vs rounded operands {off:e}, bf16 vs f32 {moved:e}");
    assert!(off <= 1e-5, "bf16 block off the rounded operands' by {off}");
    assert!(moved > 1e-4, "bf16 block equals the f32 one ({moved:e})");
}
