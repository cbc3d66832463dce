//! kiln's LSTM and GRU against PyTorch 2.15 (float64 reference values in `tests/fixtures/`,
//! made by `shared/peers/make_fixtures.py`): the same weights, loaded by PyTorch's parameter
//! names, give the same outputs, final states and gradients of `sum(output^2)/2`.

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use kiln_lstm::{GruConfig, LstmConfig};
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
        other => panic!("not a number: {other}"),
    }
}

fn tensor<const D: usize>(v: &Value, device: &Device) -> Tensor<D> {
    let (values, shape) = flatten(v);
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn param<const D: usize>(f: &Value, name: &str, device: &Device) -> Param<Tensor<D>> {
    Param::from_tensor(tensor(&f["params"][name], device))
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

macro_rules! load_direction {
    ($layer:ident, $f:ident, $device:ident, $suffix:literal, $ih:ident, $hh:ident, $bi:ident, $bh:ident) => {
        $layer.$ih = param(&$f, concat!("weight_ih_l0", $suffix), &$device);
        $layer.$hh = param(&$f, concat!("weight_hh_l0", $suffix), &$device);
        $layer.$bi = param(&$f, concat!("bias_ih_l0", $suffix), &$device);
        $layer.$bh = param(&$f, concat!("bias_hh_l0", $suffix), &$device);
    };
}

fn check_lstm(name: &str, bidirectional: bool) {
    let f = fixture(name);
    let device = Device::flex().autodiff();
    let (d_input, d_hidden) = (
        f["d_input"].as_u64().unwrap() as usize,
        f["d_hidden"].as_u64().unwrap() as usize,
    );
    let mut lstm = LstmConfig::new(d_input, d_hidden)
        .with_bidirectional(bidirectional)
        .init(&device);
    load_direction!(
        lstm,
        f,
        device,
        "",
        weight_ih_l0,
        weight_hh_l0,
        bias_ih_l0,
        bias_hh_l0
    );
    if bidirectional {
        lstm.weight_ih_l0_reverse = Some(param(&f, "weight_ih_l0_reverse", &device));
        lstm.weight_hh_l0_reverse = Some(param(&f, "weight_hh_l0_reverse", &device));
        lstm.bias_ih_l0_reverse = Some(param(&f, "bias_ih_l0_reverse", &device));
        lstm.bias_hh_l0_reverse = Some(param(&f, "bias_hh_l0_reverse", &device));
    }
    let x = tensor::<3>(&f["input"], &device).require_grad();
    let (out, (h_n, c_n)) = lstm.forward(x.clone(), None);
    assert_close("output", out.clone(), &f["output"]);
    assert_close("h_n", h_n, &f["final_state"]["h_n"]);
    assert_close("c_n", c_n, &f["final_state"]["c_n"]);

    let grads = ((out.clone() * out).sum() / 2.0).backward();
    assert_close("grad input", x.grad(&grads).unwrap(), &f["grad_input"]);
    let g = |p: &Param<Tensor<2>>| p.grad(&grads).unwrap();
    let g1 = |p: &Param<Tensor<1>>| p.grad(&grads).unwrap();
    let gp = &f["grad_params"];
    assert_close(
        "grad weight_ih_l0",
        g(&lstm.weight_ih_l0),
        &gp["weight_ih_l0"],
    );
    assert_close(
        "grad weight_hh_l0",
        g(&lstm.weight_hh_l0),
        &gp["weight_hh_l0"],
    );
    assert_close("grad bias_ih_l0", g1(&lstm.bias_ih_l0), &gp["bias_ih_l0"]);
    assert_close("grad bias_hh_l0", g1(&lstm.bias_hh_l0), &gp["bias_hh_l0"]);
    if bidirectional {
        assert_close(
            "grad weight_ih_l0_reverse",
            g(lstm.weight_ih_l0_reverse.as_ref().unwrap()),
            &gp["weight_ih_l0_reverse"],
        );
        assert_close(
            "grad weight_hh_l0_reverse",
            g(lstm.weight_hh_l0_reverse.as_ref().unwrap()),
            &gp["weight_hh_l0_reverse"],
        );
        assert_close(
            "grad bias_ih_l0_reverse",
            g1(lstm.bias_ih_l0_reverse.as_ref().unwrap()),
            &gp["bias_ih_l0_reverse"],
        );
        assert_close(
            "grad bias_hh_l0_reverse",
            g1(lstm.bias_hh_l0_reverse.as_ref().unwrap()),
            &gp["bias_hh_l0_reverse"],
        );
    }
}

#[test]
fn lstm_matches_pytorch() {
    check_lstm("torch_lstm", false);
}

#[test]
fn bidirectional_lstm_matches_pytorch() {
    check_lstm("torch_bilstm", true);
}

#[test]
fn gru_matches_pytorch() {
    let f = fixture("torch_gru");
    let device = Device::flex().autodiff();
    let mut gru = GruConfig::new(3, 4).init(&device);
    load_direction!(
        gru,
        f,
        device,
        "",
        weight_ih_l0,
        weight_hh_l0,
        bias_ih_l0,
        bias_hh_l0
    );
    let x = tensor::<3>(&f["input"], &device).require_grad();
    let (out, h_n) = gru.forward(x.clone(), None);
    assert_close("output", out.clone(), &f["output"]);
    assert_close("h_n", h_n, &f["final_state"]["h_n"]);
    let grads = ((out.clone() * out).sum() / 2.0).backward();
    assert_close("grad input", x.grad(&grads).unwrap(), &f["grad_input"]);
    let gp = &f["grad_params"];
    assert_close(
        "grad weight_ih_l0",
        gru.weight_ih_l0.grad(&grads).unwrap(),
        &gp["weight_ih_l0"],
    );
    assert_close(
        "grad weight_hh_l0",
        gru.weight_hh_l0.grad(&grads).unwrap(),
        &gp["weight_hh_l0"],
    );
    assert_close(
        "grad bias_ih_l0",
        gru.bias_ih_l0.grad(&grads).unwrap(),
        &gp["bias_ih_l0"],
    );
    assert_close(
        "grad bias_hh_l0",
        gru.bias_hh_l0.grad(&grads).unwrap(),
        &gp["bias_hh_l0"],
    );
}
