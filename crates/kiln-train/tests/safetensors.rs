//! Weights through safetensors under PyTorch's names and layouts: a file as PyTorch's
//! `safetensors.torch.save_file(model.state_dict())` writes it is imported into kiln's model,
//! which then gives PyTorch's outputs; exporting it again gives back the same tensors.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};
use kiln_fnn::MlpConfig;
use kiln_lstm::LstmConfig;
use kiln_train::{export_safetensors, import_safetensors};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde_json::Value;

/// This crate's directory: cargo's at run time (a test binary built from another checkout that
/// shares the target directory keeps that checkout's path in `env!`), else the build's.
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())
}

fn fixture(path: &str) -> Value {
    let path = format!("{}/{path}", manifest_dir());
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A nested JSON array as f32 values and its shape.
fn flatten(v: &Value) -> (Vec<f32>, Vec<usize>) {
    match v {
        Value::Array(items) => {
            let mut shape = vec![items.len()];
            let mut values = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let (v, s) = flatten(item);
                if i == 0 {
                    shape.extend(s);
                }
                values.extend(v);
            }
            (values, shape)
        }
        Value::Number(n) => (vec![n.as_f64().unwrap() as f32], vec![]),
        other => panic!("not a number: {other}"),
    }
}

/// The fixture's parameters as PyTorch's safetensors file of them (float32, its layouts).
fn torch_file(params: &Value) -> Vec<u8> {
    let tensors: BTreeMap<String, (Vec<u8>, Vec<usize>)> = params
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, v)| {
            let (values, shape) = flatten(v);
            let bytes = values.iter().flat_map(|x| x.to_le_bytes()).collect();
            (name.clone(), (bytes, shape))
        })
        .collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(name, (bytes, shape))| {
            (
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

fn tensor<const D: usize>(v: &Value, device: &Device) -> Tensor<D> {
    let (values, shape) = flatten(v);
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn assert_close<const D: usize>(what: &str, got: Tensor<D>, want: &Value) {
    let (want, shape) = flatten(want);
    assert_eq!(got.dims().to_vec(), shape, "{what}: shape");
    let got: Vec<f32> = got.into_data().try_to_vec().unwrap();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-5, "{what}[{i}]: kiln {g}, PyTorch {w}");
    }
}

/// Every tensor of `exported` has the name, shape and values it has in `original`.
fn assert_same_tensors(exported: &[u8], original: &[u8]) {
    let (a, b) = (
        SafeTensors::deserialize(exported).unwrap(),
        SafeTensors::deserialize(original).unwrap(),
    );
    let mut names_a = a.names();
    let mut names_b = b.names();
    names_a.sort();
    names_b.sort();
    assert_eq!(names_a, names_b, "the same tensor names");
    for name in names_b {
        let (x, y) = (a.tensor(name).unwrap(), b.tensor(name).unwrap());
        assert_eq!(x.shape(), y.shape(), "{name}: shape");
        assert_eq!(x.dtype(), y.dtype(), "{name}: dtype");
        assert_eq!(x.data(), y.data(), "{name}: values");
    }
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-st-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_mlp_round_trips_through_pytorch_safetensors() {
    let f = fixture("tests/fixtures/torch_mlp.json");
    let device = Device::flex();
    let dir = scratch("mlp");
    let torch = dir.join("torch.safetensors");
    std::fs::write(&torch, torch_file(&f["params"])).unwrap();

    let fresh = MlpConfig::new(5, vec![4, 3], 2)
        .with_dropout(0.0)
        .init(&device);
    let mlp = import_safetensors(fresh, &torch).unwrap();
    assert_close(
        "output",
        mlp.forward(tensor::<2>(&f["input"], &device)),
        &f["output"],
    );

    let exported = dir.join("kiln.safetensors");
    export_safetensors(&mlp, &exported).unwrap();
    assert_same_tensors(
        &std::fs::read(&exported).unwrap(),
        &std::fs::read(&torch).unwrap(),
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_lstm_round_trips_through_pytorch_safetensors() {
    let f = fixture("../../models/lstm/tests/fixtures/torch_lstm.json");
    let device = Device::flex();
    let dir = scratch("lstm");
    let torch = dir.join("torch.safetensors");
    std::fs::write(&torch, torch_file(&f["params"])).unwrap();

    let d = |k: &str| f[k].as_u64().unwrap() as usize;
    let fresh = LstmConfig::new(d("d_input"), d("d_hidden")).init(&device);
    let lstm = import_safetensors(fresh, &torch).unwrap();
    let (out, (h_n, c_n)) = lstm.forward(tensor::<3>(&f["input"], &device), None);
    assert_close("output", out, &f["output"]);
    assert_close("h_n", h_n, &f["final_state"]["h_n"]);
    assert_close("c_n", c_n, &f["final_state"]["c_n"]);

    let exported = dir.join("kiln.safetensors");
    export_safetensors(&lstm, &exported).unwrap();
    assert_same_tensors(
        &std::fs::read(&exported).unwrap(),
        &std::fs::read(&torch).unwrap(),
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_file_for_another_model_is_an_error_naming_the_tensors() {
    let f = fixture("tests/fixtures/torch_mlp.json");
    let device = Device::flex();
    let dir = scratch("other");
    let torch = dir.join("torch.safetensors");
    std::fs::write(&torch, torch_file(&f["params"])).unwrap();
    // One hidden layer fewer: hidden.1 is extra, and output has the wrong shape.
    let err = import_safetensors(MlpConfig::new(5, vec![4], 2).init(&device), &torch)
        .unwrap_err()
        .to_string();
    assert!(err.contains("torch.safetensors"), "{err}");
    assert!(err.contains("hidden.1") || err.contains("output"), "{err}");
    // A misshapen tensor in the file's own (PyTorch's) layout, `[out, in]`: Burn compares
    // the transposes, [4, 2] and [3, 2].
    let err = import_safetensors(MlpConfig::new(5, vec![4, 4], 2).init(&device), &torch)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "`output.weight`: the model's tensor has shape [2, 4] (PyTorch's layout), the file's [2, 3]"
        ),
        "{err}"
    );
    std::fs::write(&torch, b"not a safetensors file").unwrap();
    let err = import_safetensors(MlpConfig::new(5, vec![4], 2).init(&device), &torch)
        .unwrap_err()
        .to_string();
    assert!(err.contains("torch.safetensors"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}
