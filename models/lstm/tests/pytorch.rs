//! kiln's LSTM and GRU against PyTorch 2.15 (float64 reference values in `tests/fixtures/`,
//! made by `shared/peers/make_fixtures.py`): the same weights, loaded by PyTorch's parameter
//! names, give the same outputs, final states and gradients of `sum(output^2)/2`.

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use kiln_lstm::{GruConfig, LstmConfig};
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
    let _turn = PRECISION.lock().unwrap_or_else(|e| e.into_inner());
    check_lstm("torch_lstm", false);
}

#[test]
fn bidirectional_lstm_matches_pytorch() {
    let _turn = PRECISION.lock().unwrap_or_else(|e| e.into_inner());
    check_lstm("torch_bilstm", true);
}

/// The fused LSTM's bf16 products (`--precision bf16`) against the same float64 references:
/// within bf16's rounding, and not the f32 result (the products did run in bf16).
#[test]
fn lstm_in_bf16_matches_pytorch_within_bf16_rounding() {
    let _turn = PRECISION.lock().unwrap_or_else(|e| e.into_inner());
    let _bf16 = kiln_common::PrecisionScope::new(kiln_common::Precision::Bf16);
    for (name, bidirectional) in [("torch_lstm", false), ("torch_bilstm", true)] {
        WORST.with(|w| w.set(0.0));
        check_lstm(name, bidirectional);
        let worst = WORST.with(|w| w.get());
        eprintln!("{name} in bf16: largest difference from PyTorch {worst:e}");
        assert!(
            worst > 1e-4,
            "{name}: no bf16 rounding to be seen ({worst:e})"
        );
    }
}

#[test]
fn gru_matches_pytorch() {
    let _turn = PRECISION.lock().unwrap_or_else(|e| e.into_inner());
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
