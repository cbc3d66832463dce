//! Weights for other tools: safetensors files under PyTorch's names and layouts, through
//! burn-store (Burn's own safetensors store and PyTorch adapters).
//!
//! A kiln model's tensor names are its module paths (`hidden.0.linear.weight`,
//! `lstms.0.weight_ih_l0`), which are the `state_dict` names of a PyTorch twin built with the
//! same attribute names. The adapters turn Burn's layouts into PyTorch's: a `Linear` weight is
//! stored `[out, in]`, batch-norm `gamma`/`beta` become `weight`/`bias`. kiln's LSTM and GRU
//! already keep PyTorch's names and layouts (`weight_ih_l0` is `[4H, I]`).

use std::collections::HashMap;
use std::path::Path;

use burn::module::Module;
use burn::store::{
    ApplyError, BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore,
};
use safetensors::SafeTensors;

use crate::{TrainError, write_atomic};

/// Writes `model`'s weights to `path` as safetensors, with PyTorch's names and layouts.
pub fn export_safetensors<M: Module>(model: &M, path: &Path) -> Result<(), TrainError> {
    let error = |reason: String| TrainError::Record {
        path: path.to_path_buf(),
        reason,
    };
    let mut store = SafetensorsStore::from_bytes(None)
        .with_to_adapter(BurnToPyTorchAdapter)
        .metadata("producer", "kiln");
    model
        .save_into(&mut store)
        .map_err(|e| error(format!("collecting the weights: {e}")))?;
    let bytes = store
        .get_bytes()
        .map_err(|e| error(format!("encoding safetensors: {e}")))?;
    write_atomic(path, &bytes)
}

/// The shape of every tensor in a safetensors file, as the file stores it (PyTorch's layout).
fn file_shapes(bytes: &[u8]) -> HashMap<String, Vec<usize>> {
    SafeTensors::read_metadata(bytes)
        .map(|(_, metadata)| {
            metadata
                .tensors()
                .into_iter()
                .map(|(name, info)| (name, info.shape.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// A load error in the file's words: a misshapen tensor's shapes in PyTorch's layout, as the
/// file has it (the adapter compares them after transposing a `Linear` weight to Burn's
/// `[in, out]`, which would show the user the transpose of what they wrote).
fn in_pytorch_layout(error: &ApplyError, file_shapes: &HashMap<String, Vec<usize>>) -> String {
    let ApplyError::ShapeMismatch {
        path,
        expected,
        found,
    } = error
    else {
        return error.to_string();
    };
    let (expected, found) = (expected.to_vec(), found.to_vec());
    let in_file = file_shapes.get(path).cloned();
    let transposed = |dims: &[usize]| dims.iter().rev().copied().collect::<Vec<_>>();
    let expected = match &in_file {
        Some(file) if file != &found && *file == transposed(&found) => transposed(&expected),
        _ => expected,
    };
    format!(
        "`{path}`: the model's tensor has shape {expected:?} (PyTorch's layout), the file's {:?}",
        in_file.unwrap_or(found)
    )
}

/// Loads a safetensors file with PyTorch's names and layouts (as `export_safetensors` writes
/// them, or PyTorch's `safetensors.torch.save_file(model.state_dict())`) into `model`, which
/// must have the same architecture: a missing, extra or misshapen tensor is an error naming it.
pub fn import_safetensors<M: Module>(mut model: M, path: &Path) -> Result<M, TrainError> {
    let error = |reason: String| TrainError::Record {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file_shapes = file_shapes(&bytes);
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .with_from_adapter(PyTorchToBurnAdapter)
        // Misshapen and missing tensors come back in the result, to be named below.
        .validate(false)
        .allow_partial(true);
    let result = model
        .load_from(&mut store)
        .map_err(|e| error(format!("not a safetensors file kiln can read: {e}")))?;
    if !result.errors.is_empty() {
        let errors: Vec<String> = result
            .errors
            .iter()
            .map(|e| in_pytorch_layout(e, &file_shapes))
            .collect();
        return Err(error(errors.join("; ")));
    }
    if !result.missing.is_empty() {
        let missing: Vec<&str> = result.missing.iter().map(|(p, _)| p.as_str()).collect();
        return Err(error(format!(
            "the model's tensors {} are not in the file",
            missing.join(", ")
        )));
    }
    // PyTorch's batch norm keeps a step counter the Burn layer has no use for.
    let unused: Vec<&str> = result
        .unused
        .iter()
        .map(String::as_str)
        .filter(|p| !p.ends_with("num_batches_tracked"))
        .collect();
    if !unused.is_empty() {
        return Err(error(format!(
            "the file has tensors the model lacks: {}",
            unused.join(", ")
        )));
    }
    Ok(model)
}
