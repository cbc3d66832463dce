//! kiln-cnn's fused convolution (+ bias, ReLU, max-pool) and the composed Burn path it replaces,
//! against PyTorch 2.15 (float64 reference values in `tests/fixtures/torch_conv.json`, made by
//! `tests/fixtures/make_fixtures.py`): the same weights and input give the same output and the
//! same gradients of `sum(output^2)/2` for the input, the weight and the bias. Strides 1, 2 and
//! `[1, 2]`, symmetric and asymmetric padding, odd sizes, 1 and 3 channels, pools 2 and 3.
#![cfg(feature = "flex")]

use burn::module::Param;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::MaxPool2dConfig;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use kiln_cnn::fused;
use serde_json::Value;

const TOLERANCE: f32 = 1e-4;
/// Under bf16 products (`kiln_common::Precision::Bf16`): operands rounded to 8 significant bits
/// (relative error up to 2^-9 each), sums in f32, so that a sum's error scales with its terms'
/// magnitudes, not its own (a weight gradient sums hundreds of products of both signs): 2% of
/// the tensor's largest value.
const BF16_TOLERANCE: f32 = 2e-2;

/// The precision is process-wide: the tests of this binary take turns.
static PRECISION: std::sync::Mutex<()> = std::sync::Mutex::new(());

std::thread_local! {
    /// The largest difference from PyTorch `assert_close` has seen on this thread.
    static WORST: std::cell::Cell<f32> = const { std::cell::Cell::new(0.0) };
}

/// This crate's directory: cargo's at run time (a test binary built from another checkout that
/// shares the target directory keeps that checkout's path in `env!`), else the build's.
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())
}

fn fixture() -> Value {
    let path = format!("{}/tests/fixtures/torch_conv.json", manifest_dir());
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A nested JSON array as flat values and its shape.
fn flatten(v: &Value) -> (Vec<f32>, Vec<usize>) {
    match v {
        Value::Array(items) => {
            let mut values = Vec::new();
            let mut inner = Vec::new();
            for item in items {
                let (v, s) = flatten(item);
                values.extend(v);
                inner = s;
            }
            (values, [vec![items.len()], inner].concat())
        }
        Value::Number(n) => (vec![n.as_f64().unwrap() as f32], vec![]),
        other => panic!("not a number: {other}"),
    }
}

fn tensor<const D: usize>(v: &Value, device: &Device) -> Tensor<D> {
    let (values, shape) = flatten(v);
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn assert_close<const D: usize>(what: &str, got: Tensor<D>, want: &Value) {
    let (want, shape) = flatten(want);
    assert_eq!(got.dims().to_vec(), shape, "{what}: shape");
    let got: Vec<f32> = got.into_data().iter::<f32>().collect();
    let tolerance = match kiln_common::precision() {
        kiln_common::Precision::Bf16 => {
            BF16_TOLERANCE * want.iter().fold(1f32, |m, w| m.max(w.abs()))
        }
        kiln_common::Precision::F32 => TOLERANCE,
        kiln_common::Precision::F16 => unreachable!("these tests run in f32 and bf16"),
    };
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        WORST.with(|worst| worst.set(worst.get().max((g - w).abs())));
        assert!(
            (g - w).abs() < tolerance,
            "{what}[{i}]: kiln {g} vs PyTorch {w}"
        );
    }
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap() as usize)
        .collect()
}

/// The case's convolution with PyTorch's weights.
fn conv(case: &Value, device: &Device) -> Conv2d {
    let weight: Tensor<4> = tensor(&case["weight"], device);
    let [c_out, c_in, k, _] = weight.dims();
    let stride = usizes(&case["stride"]);
    let p = usizes(&case["padding"]);
    let mut conv = Conv2dConfig::new([c_in, c_out], [k, k])
        .with_stride([stride[0], stride[1]])
        .with_padding(PaddingConfig2d::Explicit(p[0], p[1], p[2], p[3]))
        .init(device);
    conv.weight = Param::from_tensor(weight);
    conv.bias = Some(Param::from_tensor(tensor(&case["bias"], device)));
    conv
}

#[test]
fn fused_and_composed_convolutions_equal_pytorch() {
    let _turn = PRECISION.lock().unwrap_or_else(|e| e.into_inner());
    check_convolutions(&["fused", "composed"]);
}

/// The fused convolution's bf16 products (`--precision bf16`) against the same float64
/// references: within bf16's rounding, and not the f32 result (the products did run in bf16).
#[test]
fn the_fused_convolution_in_bf16_matches_pytorch_within_bf16_rounding() {
    let _turn = PRECISION.lock().unwrap_or_else(|e| e.into_inner());
    let _bf16 = kiln_common::PrecisionScope::new(kiln_common::Precision::Bf16);
    WORST.with(|w| w.set(0.0));
    check_convolutions(&["fused"]);
    let worst = WORST.with(|w| w.get());
    eprintln!("fused convolution in bf16: largest difference from PyTorch {worst:e}");
    assert!(worst > 1e-4, "no bf16 rounding to be seen ({worst:e})");
}

/// Every case of the fixture on each of `paths` ("fused", "composed").
fn check_convolutions(paths: &[&str]) {
    let device = Device::flex().autodiff();
    let fixture = fixture();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let conv = conv(case, &device);
        let with_relu = case["relu"].as_bool().unwrap();
        let pool = case["pool"].as_u64().unwrap() as usize;
        let max_pool = (pool > 1).then(|| MaxPool2dConfig::new([pool, pool]).init());
        for &path in paths {
            let x: Tensor<4> = tensor::<4>(&case["input"], &device).require_grad();
            let out = if path == "fused" {
                let padding = fused::applies_to(&conv, &x).expect("the fused path applies");
                fused::conv2d_bias_relu(&conv, x.clone(), padding, with_relu, max_pool.as_ref())
            } else {
                let out = conv.forward(x.clone());
                let out = if with_relu { relu(out) } else { out };
                match &max_pool {
                    Some(pool) => pool.forward(out),
                    None => out,
                }
            };
            let grads = (out.clone().powi_scalar(2).sum() / 2.0).backward();
            let what = |part: &str| format!("{name}, {path}: {part}");
            assert_close(&what("output"), out, &case["output"]);
            assert_close(
                &what("d input"),
                x.grad(&grads).unwrap(),
                &case["grad_input"],
            );
            let d_weight = conv.weight.val().grad(&grads).unwrap();
            assert_close(&what("d weight"), d_weight, &case["grad_weight"]);
            let d_bias = conv.bias.as_ref().unwrap().val().grad(&grads).unwrap();
            assert_close(&what("d bias"), d_bias, &case["grad_bias"]);
        }
    }
}
