use std::path::PathBuf;

use burn::module::Module;
use serde::Serialize;

use crate::TrainError;
use crate::records::files::{remove_stale_temporaries, write_atomic};

/// The directory a run writes: `config.json`, `history.csv`, `metrics.json`, `model.bpk`.
#[derive(Debug, Clone)]
pub struct RunDir {
    /// The directory.
    pub path: PathBuf,
}

impl RunDir {
    /// The weights' file name.
    pub const MODEL: &'static str = "model.bpk";

    /// Creates a run directory that holds nothing yet: a path that holds a run already (or
    /// any other file) is an error, so that no run is overwritten by accident. See
    /// [`replace`](Self::replace) to start over on purpose.
    pub fn create_new(path: impl Into<PathBuf>) -> Result<Self, TrainError> {
        let path = path.into();
        let occupied = std::fs::read_dir(&path).is_ok_and(|mut d| d.next().is_some());
        if occupied || path.is_file() {
            let what = if path.join("config.json").is_file() {
                "holds a run already"
            } else {
                "is not an empty directory"
            };
            return Err(TrainError::Record {
                path,
                reason: format!(
                    "{what}; nothing was changed. Give another --out, continue that run with \
                     --resume, or replace it with --overwrite"
                ),
            });
        }
        Self::create(path)
    }

    /// Removes what `path` holds (a run's files) and creates the run directory afresh:
    /// `kiln train --overwrite`.
    pub fn replace(path: impl Into<PathBuf>) -> Result<Self, TrainError> {
        let path = path.into();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).map_err(|source| TrainError::Io {
                path: path.clone(),
                source,
            })?;
        }
        Self::create(path)
    }

    /// Creates the directory (and its parents), keeping what it holds.
    pub fn create(path: impl Into<PathBuf>) -> Result<Self, TrainError> {
        let path = path.into();
        std::fs::create_dir_all(&path).map_err(|source| TrainError::Io {
            path: path.clone(),
            source,
        })?;
        remove_stale_temporaries(&path);
        Ok(Self { path })
    }

    /// An existing run directory, for `kiln eval`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, TrainError> {
        let path = path.into();
        if !path.exists() {
            return Err(TrainError::Record {
                path,
                reason: "no such run directory (give the directory `kiln train` printed, or \
                         the one given to --out)"
                    .into(),
            });
        }
        if !path.join("config.json").is_file() {
            return Err(TrainError::Record {
                path,
                reason: "not a kiln run directory (no config.json)".into(),
            });
        }
        Ok(Self { path })
    }

    /// The error for a run without weights: stopped (killed, or still training) after the
    /// epoch its last checkpoint holds, or before its first epoch ended.
    pub fn unfinished(&self) -> TrainError {
        let reason = match self.checkpoints().latest().ok().flatten() {
            Some(epoch) => format!(
                "an unfinished run: it has no {} yet, it stopped after epoch {epoch} (killed, or \
                 still training); continue it with `kiln train --resume {}`",
                Self::MODEL,
                self.path.display()
            ),
            None => format!(
                "an unfinished run: it has no {} and no checkpoint, it stopped before its first \
                 epoch ended; train it again (`--overwrite` replaces it)",
                Self::MODEL
            ),
        };
        TrainError::Record {
            path: self.path.clone(),
            reason,
        }
    }

    /// The run's checkpoints, in `checkpoint/`.
    pub fn checkpoints(&self) -> crate::CheckpointDir {
        crate::CheckpointDir::new(self.file("checkpoint"))
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
        if !path.exists() {
            return Err(self.unfinished());
        }
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

    #[test]
    fn a_new_run_never_overwrites_one_and_replace_starts_over() {
        let dir = std::env::temp_dir().join(format!("kiln-run-new-{}", std::process::id()));
        let run = RunDir::create_new(&dir).unwrap();
        run.write_text("config.json", "{}").unwrap();
        let e = RunDir::create_new(&dir).unwrap_err().to_string();
        assert!(
            e.contains("holds a run already") && e.contains("--overwrite"),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(run.file("config.json")).unwrap(),
            "{}"
        );
        let model = burn::nn::LinearConfig::new(1, 1).init(&burn::tensor::Device::flex());
        let e = run.load_model(model).unwrap_err().to_string();
        assert!(
            e.contains("an unfinished run") && e.contains("no checkpoint"),
            "{e}"
        );
        let run = RunDir::replace(&dir).unwrap();
        assert!(!run.file("config.json").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
