//! kiln's `EncoderBlock` against PyTorch 2.15's `TransformerEncoderLayer` (float64 reference
//! values in `tests/fixtures/`, made by `shared/peers/make_fixtures.py`): post-norm and pre-norm,
//! with a key padding mask. The same weights give the same output and the same gradients of
//! `sum(output^2)/2` for the input and every parameter. On flex the attention takes the tiled
//! path (`kiln_transformer::flash`), so these are its outputs and gradients against PyTorch's.

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Bool, Device, Tensor, TensorData};
use kiln_transformer::EncoderBlockConfig;
use serde_json::Value;

const TOLERANCE: f32 = 1e-4;

/// This crate's directory: cargo's at run time (a test binary built from another checkout that
/// shares the target directory keeps that checkout's path in `env!`), else the build's.
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}.json", manifest_dir());
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
        Value::Bool(b) => (vec![f32::from(u8::from(*b))], vec![]),
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
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() < TOLERANCE,
            "{what}[{i}]: kiln {g} vs PyTorch {w}"
        );
    }
}

/// PyTorch's Linear weight is `[out, in]`, Burn's `[in, out]`.
fn load_linear(linear: &mut Linear, params: &Value, name: &str, device: &Device) {
    linear.weight =
        Param::from_tensor(tensor::<2>(&params[format!("{name}.weight")], device).transpose());
    linear.bias = Some(Param::from_tensor(tensor(
        &params[format!("{name}.bias")],
        device,
    )));
}

fn load_norm(norm: &mut LayerNorm, params: &Value, name: &str, device: &Device) {
    norm.gamma = Param::from_tensor(tensor(&params[format!("{name}.weight")], device));
    norm.beta = Some(Param::from_tensor(tensor(
        &params[format!("{name}.bias")],
        device,
    )));
}

fn check_block(name: &str, norm_first: bool) {
    let f = fixture(name);
    let device = Device::flex().autodiff();
    let p = &f["params"];
    let mut block = EncoderBlockConfig::new(8, 2, 16)
        .with_dropout(0.0)
        .with_norm_first(norm_first)
        .init(&device);
    block.self_attn.in_proj_weight =
        Param::from_tensor(tensor(&p["self_attn.in_proj_weight"], &device));
    block.self_attn.in_proj_bias =
        Param::from_tensor(tensor(&p["self_attn.in_proj_bias"], &device));
    load_linear(
        &mut block.self_attn.out_proj,
        p,
        "self_attn.out_proj",
        &device,
    );
    load_linear(&mut block.linear1, p, "linear1", &device);
    load_linear(&mut block.linear2, p, "linear2", &device);
    load_norm(&mut block.norm1, p, "norm1", &device);
    load_norm(&mut block.norm2, p, "norm2", &device);

    let x = tensor::<3>(&f["input"], &device).require_grad();
    assert!(kiln_transformer::flash::applies_to(&x.clone().unsqueeze()));
    let padding: Tensor<2, Bool> = tensor::<2>(&f["padding_mask"], &device).equal_elem(1.0);
    let out = block.forward(x.clone(), Some(padding));
    assert_close("output", out.clone(), &f["output"]);

    let grads = ((out.clone() * out).sum() / 2.0).backward();
    let gp = &f["grad_params"];
    assert_close("grad input", x.grad(&grads).unwrap(), &f["grad_input"]);
    assert_close(
        "grad self_attn.in_proj_weight",
        block.self_attn.in_proj_weight.grad(&grads).unwrap(),
        &gp["self_attn.in_proj_weight"],
    );
    assert_close(
        "grad self_attn.in_proj_bias",
        block.self_attn.in_proj_bias.grad(&grads).unwrap(),
        &gp["self_attn.in_proj_bias"],
    );
    let linears: [(&Linear, &str); 3] = [
        (&block.self_attn.out_proj, "self_attn.out_proj"),
        (&block.linear1, "linear1"),
        (&block.linear2, "linear2"),
    ];
    for (linear, name) in linears {
        assert_close(
            &format!("grad {name}.weight"),
            linear.weight.grad(&grads).unwrap().transpose(),
            &gp[format!("{name}.weight")],
        );
        assert_close(
            &format!("grad {name}.bias"),
            linear.bias.as_ref().unwrap().grad(&grads).unwrap(),
            &gp[format!("{name}.bias")],
        );
    }
    for (norm, name) in [(&block.norm1, "norm1"), (&block.norm2, "norm2")] {
        assert_close(
            &format!("grad {name}.weight"),
            norm.gamma.grad(&grads).unwrap(),
            &gp[format!("{name}.weight")],
        );
        assert_close(
            &format!("grad {name}.bias"),
            norm.beta.as_ref().unwrap().grad(&grads).unwrap(),
            &gp[format!("{name}.bias")],
        );
    }
}

#[test]
fn post_norm_block_matches_pytorch() {
    check_block("torch_encoder_post_norm", false);
}

#[test]
fn pre_norm_block_matches_pytorch() {
    check_block("torch_encoder_pre_norm", true);
}
