//! Transfer learning: start a model from trained weights (every tensor whose module path and
//! shape match), and freeze the parts that should not train (Keras's `trainable = False`).

use std::path::{Path, PathBuf};

use burn::module::{Module, ParamGroup};
use burn::store::{
    ApplyError, ApplyResult, BurnpackStore, ModuleSnapshot, PathFilter, PyTorchToBurnAdapter,
    SafetensorsStore,
};
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};

use crate::{RunDir, TrainError};

/// What [`init_from`] took from its source and what it left as initialised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitReport {
    /// The weights file read.
    pub source: PathBuf,
    /// The model's tensors taken from the source (same module path and shape).
    pub loaded: Vec<String>,
    /// The model's tensors the source lacks or holds in another shape (a head for another
    /// number of classes): kept as initialised.
    pub new: Vec<String>,
    /// Those of [`new`](Self::new) the source holds in another shape, with both shapes.
    #[serde(default)]
    pub reshaped: Vec<String>,
    /// The source's tensors the model has no place for.
    pub skipped: Vec<String>,
}

impl std::fmt::Display for InitReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |names: &[String]| match names {
            [] => "none".to_string(),
            names => names.join(", "),
        };
        writeln!(f, "initialised from {}:", self.source.display())?;
        writeln!(
            f,
            "  loaded  {} tensors: {}",
            self.loaded.len(),
            list(&self.loaded)
        )?;
        writeln!(
            f,
            "  new     {} tensors: {}",
            self.new.len(),
            list(&self.new)
        )?;
        if !self.reshaped.is_empty() {
            writeln!(
                f,
                "          of another shape: {}",
                self.reshaped.join(", ")
            )?;
        }
        writeln!(
            f,
            "  skipped {} tensors: {}",
            self.skipped.len(),
            list(&self.skipped)
        )
    }
}

/// The weights file of `source`: a run directory's `model.bpk`, a `.bpk` file, or a
/// `.safetensors` file (PyTorch's names and layouts, as `kiln export` and
/// `safetensors.torch.save_file(model.state_dict())` write them).
fn weights_file(source: &Path) -> PathBuf {
    if source.is_dir() {
        source.join(RunDir::MODEL)
    } else {
        source.to_path_buf()
    }
}

/// Loads into `model` every tensor of `source` whose module path and shape match, except those
/// under the prefixes in `skip` (a new head: `output`), leaving the others as initialised. An
/// error when `source` cannot be read or no tensor of it fits.
pub fn init_from<M: Module>(
    mut model: M,
    source: &Path,
    skip: &[String],
) -> Result<(M, InitReport), TrainError> {
    check_prefixes(&model, skip, "init_skip")?;
    let path = weights_file(source);
    let kept: Vec<String> = param_paths(&model)
        .into_iter()
        .filter(|p| !skip.iter().any(|prefix| under(p, prefix)))
        .collect();
    let filter = PathFilter::new().with_full_paths(kept);
    let error = |reason: String| TrainError::Record {
        path: path.clone(),
        reason,
    };
    let bytes = std::fs::read(&path).map_err(|e| {
        error(if source.is_dir() {
            format!("{e}: --init-from takes a run directory holding model.bpk, or a weights file")
        } else {
            e.to_string()
        })
    })?;
    let safetensors = path.extension().is_some_and(|e| e == "safetensors");
    let kind = if safetensors {
        "safetensors"
    } else {
        "burnpack (.bpk)"
    };
    let unreadable = |e: String| error(format!("not a {kind} file kiln can read: {e}"));
    let result = if safetensors {
        let mut store = SafetensorsStore::from_bytes(Some(bytes))
            .with_from_adapter(PyTorchToBurnAdapter)
            .validate(false)
            .allow_partial(true)
            .filter(filter);
        model
            .load_from(&mut store)
            .map_err(|e| unreadable(e.to_string()))?
    } else {
        let mut store = BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes)))
            .validate(false)
            .allow_partial(true)
            .filter(filter);
        model
            .load_from(&mut store)
            .map_err(|e| unreadable(e.to_string()))?
    };
    let report = report(result, path.clone()).map_err(error)?;
    if report.loaded.is_empty() {
        return Err(error(format!(
            "no tensor fits the model (the file has {}; the model needs {})",
            report.skipped.join(", "),
            report.new.join(", ")
        )));
    }
    Ok((model, report))
}

fn report(result: ApplyResult, source: PathBuf) -> Result<InitReport, String> {
    let mut report = InitReport {
        source,
        loaded: result.applied,
        new: result.missing.into_iter().map(|(path, _)| path).collect(),
        reshaped: Vec::new(),
        // Left out by `skip`, or in the file only.
        skipped: result
            .skipped
            .into_iter()
            .chain(result.unused)
            .filter(|p| !p.ends_with("num_batches_tracked"))
            .collect(),
    };
    for error in result.errors {
        let ApplyError::ShapeMismatch {
            path,
            expected,
            found,
        } = error
        else {
            return Err(error.to_string());
        };
        report.reshaped.push(format!(
            "{path} (the model's {:?}, the file's {:?})",
            expected.to_vec(),
            found.to_vec()
        ));
        report.new.push(path);
    }
    report.loaded.sort();
    report.new.sort();
    report.reshaped.sort();
    report.skipped.sort();
    Ok(report)
}

/// The parameters under any of `prefixes` (module paths such as `blocks` or `hidden.0`; a
/// prefix matches whole path segments: `hidden.1` is not under `hidden.10`).
pub fn param_group(prefixes: &[String]) -> Result<ParamGroup, TrainError> {
    let patterns: Vec<String> = prefixes
        .iter()
        .map(|p| format!("^{}(\\..*)?$", regex_escape(p.trim_end_matches('.'))))
        .collect();
    ParamGroup::from_any_regexes(patterns)
        .map_err(|e| TrainError::option("freeze", format!("{e:?}")))
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| match c {
            '.' | '*' | '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '^' | '$' | '|' | '\\' => {
                vec!['\\', c]
            }
            c => vec![c],
        })
        .collect()
}

/// The module path of every float parameter of `model`, in order.
pub fn param_paths<M: Module>(model: &M) -> Vec<String> {
    model
        .collect(None, None, false)
        .into_iter()
        .map(|tensor| tensor.name)
        .collect()
}

/// `model` with the parameters under `prefixes` frozen: they get no gradient and no optimiser
/// state, and the batch norms and dropouts among them run in inference mode. A prefix that
/// matches no parameter is an error naming the model's top-level parts.
pub fn freeze<M: Module>(model: M, prefixes: &[String]) -> Result<M, TrainError> {
    if prefixes.is_empty() {
        return Ok(model);
    }
    check_prefixes(&model, prefixes, "freeze")?;
    Ok(model.freeze_group(param_group(prefixes)?))
}

/// Whether the parameter at `path` is under `prefix` (whole segments).
fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('.');
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// Every prefix must name some parameter of `model`.
fn check_prefixes<M: Module>(
    model: &M,
    prefixes: &[String],
    option: &'static str,
) -> Result<(), TrainError> {
    let paths = param_paths(model);
    for prefix in prefixes {
        if !paths.iter().any(|p| under(p, prefix)) {
            let mut parts: Vec<&str> = paths.iter().filter_map(|p| p.split('.').next()).collect();
            parts.dedup();
            return Err(TrainError::option(
                option,
                format!(
                    "`{prefix}` names no parameter of the model (its parts: {})",
                    parts.join(", ")
                ),
            ));
        }
    }
    Ok(())
}
