use std::path::{Path, PathBuf};

use burn::module::Module;
use serde::Serialize;

use crate::TrainError;

/// Writes `bytes` to `path` all or nothing: into a temporary file beside it, then renamed over
/// it, so that a crash never leaves a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let io = |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The directory a run writes: `config.json`, `history.csv`, `metrics.json`, `model.bpk`.
#[derive(Debug, Clone)]
pub struct RunDir {
    /// The directory.
    pub path: PathBuf,
}

impl RunDir {
    /// The weights' file name.
    pub const MODEL: &'static str = "model.bpk";

    /// Creates the directory (and its parents).
    pub fn create(path: impl Into<PathBuf>) -> Result<Self, TrainError> {
        let path = path.into();
        std::fs::create_dir_all(&path).map_err(|source| TrainError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Self { path })
    }

    /// An existing run directory, for `kiln eval`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, TrainError> {
        let path = path.into();
        if !path.join("config.json").is_file() {
            return Err(TrainError::Record {
                path,
                reason: "not a kiln run directory (no config.json)".into(),
            });
        }
        Ok(Self { path })
    }

    /// The path of the file `name` in the run directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `value` as pretty JSON to the file `name`, atomically.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), TrainError> {
        let json = serde_json::to_string_pretty(value).map_err(|e| TrainError::Record {
            path: self.file(name),
            reason: e.to_string(),
        })?;
        write_atomic(&self.file(name), format!("{json}\n").as_bytes())
    }

    /// Reads the JSON file `name`.
    pub fn read_json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, TrainError> {
        let path = self.file(name);
        let text = std::fs::read_to_string(&path).map_err(|source| TrainError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| TrainError::Record {
            path,
            reason: e.to_string(),
        })
    }

    /// Writes `text` to the file `name`, atomically.
    pub fn write_text(&self, name: &str, text: &str) -> Result<(), TrainError> {
        write_atomic(&self.file(name), text.as_bytes())
    }

    /// Saves the model's weights (Burn's burnpack format), atomically.
    pub fn save_model<M: Module>(&self, model: M) -> Result<(), TrainError> {
        let path = self.file(Self::MODEL);
        let bytes = model
            .into_record()
            .into_bytes()
            .map_err(|e| TrainError::Record {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        write_atomic(&path, &bytes)
    }

    /// Loads weights saved by [`save_model`](Self::save_model) into `model`, which must have
    /// the same architecture.
    pub fn load_model<M: Module>(&self, model: M) -> Result<M, TrainError> {
        let path = self.file(Self::MODEL);
        let record = burn::store::ModuleRecord::load(&path).map_err(|e| TrainError::Record {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        model
            .try_load_record(record)
            .map_err(|e| TrainError::Record {
                path,
                reason: format!("the weights do not fit the model: {e}"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_leave_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("kiln-run-{}", std::process::id()));
        let run = RunDir::create(&dir).unwrap();
        run.write_text("history.csv", "a\n").unwrap();
        run.write_text("history.csv", "b\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(run.file("history.csv")).unwrap(),
            "b\n"
        );
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(RunDir::open(&dir).is_err(), "no config.json yet");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
