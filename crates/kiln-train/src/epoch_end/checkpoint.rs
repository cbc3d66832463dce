//! Crash-safe checkpoints of a training run, and reading them back to resume.
//!
//! burn-train's checkpointer hands over the model, optimiser and scheduler records at the end
//! of each epoch ([`Staged`] keeps them in memory); kiln's epoch-end hook then adds its own
//! state ([`ResumeState`]: the epoch, the history, early stopping and plateau bookkeeping) and
//! writes everything with [`CheckpointDir::write`]:
//!
//! ```text
//! DIR/checkpoint/epoch-7/{model,optim,scheduler,best}.bpk  state.json
//! DIR/checkpoint/latest          "7": the last complete epoch directory
//! ```
//!
//! An epoch directory is written under a temporary name and renamed only once complete, and
//! `latest` is replaced atomically after it: a kill at any instant leaves `latest` naming a
//! complete checkpoint. `state.json` holds each file's length and CRC-32, so a truncated or
//! corrupt file is an error naming it before any of its bytes are parsed, and a fingerprint of
//! the run's configuration, so that another run's checkpoint is refused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use burn::train::checkpoint::{
    Checkpoint, Checkpointer, CheckpointerError, CheckpointingAction, CheckpointingStrategy,
};
use burn::train::metric::store::EventStoreClient;
use serde::{Deserialize, Serialize};

use crate::epoch_end::early_stopping::Tracker;
use crate::epoch_end::schedule::Plateau;
use crate::fit::loss_scale::LossScale;
use crate::records::files::{remove_stale_temporaries, sync_dir, write_synced};
use crate::{History, Model, Supervised, TrainError, write_atomic};

/// The records burn-train checkpoints, by the names of their files.
pub(crate) const PARTS: [&str; 3] = ["model", "optim", "scheduler"];

/// The state file's format tag and version.
const FORMAT: &str = "kiln-checkpoint";
const VERSION: u32 = 1;

/// Records handed over by burn-train's checkpointers, waiting for the epoch-end hook.
#[derive(Default)]
pub(crate) struct Staging {
    slots: Mutex<HashMap<&'static str, (usize, Bytes)>>,
    ready: Condvar,
    /// Records to give back when burn-train resumes (read and checked by kiln beforehand).
    restore: Mutex<HashMap<&'static str, Bytes>>,
}

impl Staging {
    /// Waits until every part of `epoch` has arrived and takes them, in [`PARTS`] order.
    pub fn take(&self, epoch: usize) -> Result<Vec<Bytes>, TrainError> {
        let deadline = Duration::from_secs(600);
        let mut slots = self.slots.lock().expect("staging lock");
        loop {
            if PARTS
                .iter()
                .all(|p| slots.get(p).is_some_and(|(e, _)| *e == epoch))
            {
                return Ok(PARTS
                    .iter()
                    .map(|p| slots.remove(p).expect("checked above").1)
                    .collect());
            }
            let (guard, timeout) = self
                .ready
                .wait_timeout(slots, deadline)
                .expect("staging lock");
            slots = guard;
            if timeout.timed_out() {
                return Err(TrainError::Training(format!(
                    "the checkpoint records of epoch {epoch} never arrived"
                )));
            }
        }
    }

    fn put(&self, part: &'static str, epoch: usize, bytes: Bytes) {
        self.slots
            .lock()
            .expect("staging lock")
            .insert(part, (epoch, bytes));
        self.ready.notify_all();
    }

    /// Hands `parts` (in [`PARTS`] order) to burn-train's resume.
    pub fn set_restore(&self, parts: Vec<Bytes>) {
        let mut restore = self.restore.lock().expect("staging lock");
        for (name, bytes) in PARTS.iter().zip(parts) {
            restore.insert(name, bytes);
        }
    }
}

/// burn-train's checkpointer for one of the [`PARTS`]: it stages the record's bytes for the
/// epoch-end hook, which writes them with kiln's own state.
pub(crate) struct Staged {
    pub part: &'static str,
    pub staging: Arc<Staging>,
}

impl<R: Checkpoint> Checkpointer<R> for Staged {
    fn save(&self, epoch: usize, record: R) -> Result<(), CheckpointerError> {
        let bytes = record
            .checkpoint_into_bytes()
            .map_err(CheckpointerError::Record)?;
        self.staging.put(self.part, epoch, bytes);
        Ok(())
    }

    fn delete(&self, _epoch: usize) -> Result<(), CheckpointerError> {
        Ok(())
    }

    fn restore(&self, epoch: usize) -> Result<R, CheckpointerError> {
        let bytes = self
            .staging
            .restore
            .lock()
            .expect("staging lock")
            .remove(self.part)
            .ok_or_else(|| {
                CheckpointerError::Unknown(format!("no {} record for epoch {epoch}", self.part))
            })?;
        R::checkpoint_from_bytes(bytes).map_err(CheckpointerError::Record)
    }
}

/// burn-train's checkpointer for the model: it stages the weights of the user's model itself
/// (the learner trains it wrapped in [`Supervised`]), so that every weights file kiln writes
/// loads into the model as it is, like the run's `model.bpk`.
pub(crate) struct ModelPart<M: Model> {
    pub staging: Arc<Staging>,
    /// The architecture, to move records between the model and its wrapper (behind a lock:
    /// checkpointers are shared between threads, models need not be).
    pub template: Mutex<Supervised<M>>,
}

impl<M: Model> Checkpointer<ModuleRecord> for ModelPart<M> {
    fn save(&self, epoch: usize, record: ModuleRecord) -> Result<(), CheckpointerError> {
        let template = self.template.lock().expect("template lock").clone();
        let model = template
            .try_load_record(record)
            .map_err(|e| CheckpointerError::Unknown(e.to_string()))?
            .model;
        let bytes = model
            .into_record()
            .into_bytes()
            .map_err(CheckpointerError::Record)?;
        self.staging.put(PARTS[0], epoch, bytes);
        Ok(())
    }

    fn delete(&self, _epoch: usize) -> Result<(), CheckpointerError> {
        Ok(())
    }

    fn restore(&self, epoch: usize) -> Result<ModuleRecord, CheckpointerError> {
        let record: ModuleRecord = Staged {
            part: PARTS[0],
            staging: self.staging.clone(),
        }
        .restore(epoch)?;
        let template = self.template.lock().expect("template lock").clone();
        let model = template
            .model
            .try_load_record(record)
            .map_err(|e| CheckpointerError::Unknown(e.to_string()))?;
        Ok(Supervised {
            model,
            task: template.task,
            probe: template.probe,
            distillation: template.distillation,
            loss_scale: template.loss_scale,
        }
        .into_record())
    }
}

/// Checkpoints every epoch: kiln's hook keeps only the latest on disk.
pub(crate) struct EveryEpoch;

impl CheckpointingStrategy for EveryEpoch {
    fn checkpointing(&mut self, _epoch: usize, _: &EventStoreClient) -> Vec<CheckpointingAction> {
        vec![CheckpointingAction::Save]
    }
}

/// What kiln adds to burn-train's records to resume a run exactly: `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ResumeState {
    pub format: String,
    pub version: u32,
    /// The last completed epoch (from 1).
    pub epoch: usize,
    /// Early stopping ended the run after this epoch.
    pub stopped: bool,
    /// CRC-32 of the configuration that shapes the training: a checkpoint of another run is
    /// refused.
    pub fingerprint: u32,
    pub history: History,
    pub early_stopping: Tracker,
    pub plateau: Option<Plateau>,
    /// f16's loss scale after the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<LossScale>,
    /// Random state: the run's seed. Every random stream (shuffling, dropout masks,
    /// augmentation) is restarted at each epoch from `(seed, epoch)`, so the seed and the epoch
    /// are the whole random state at an epoch boundary.
    pub seed: u64,
    /// Length and CRC-32 of each weights file.
    pub files: HashMap<String, FileSum>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileSum {
    pub len: u64,
    pub crc32: u32,
}

impl FileSum {
    fn of(bytes: &[u8]) -> Self {
        Self {
            len: bytes.len() as u64,
            crc32: crc32fast::hash(bytes),
        }
    }
}

/// A checkpoint read back and checked: kiln's state and the records' bytes.
pub(crate) struct Loaded {
    pub state: ResumeState,
    /// In [`PARTS`] order.
    pub parts: Vec<Bytes>,
    /// The best epoch's weights, for restore-best and `best.bpk`.
    pub best: Option<ModuleRecord>,
}

/// A run's `checkpoint/` directory.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    /// The directory (`RUN/checkpoint`).
    pub path: PathBuf,
}

impl CheckpointDir {
    /// The file naming the latest complete epoch directory.
    pub const LATEST: &'static str = "latest";
    /// The resume state's file in each epoch directory.
    pub const STATE: &'static str = "state.json";

    /// The checkpoints under `path` (nothing is read or written yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    fn epoch_dir(&self, epoch: usize) -> PathBuf {
        self.path.join(format!("epoch-{epoch}"))
    }

    fn io(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
        move |source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// An error about `name` in the latest epoch's directory.
    pub(crate) fn record_error(&self, name: &str, reason: String) -> TrainError {
        let epoch = self.latest().ok().flatten().unwrap_or(0);
        TrainError::Record {
            path: self.epoch_dir(epoch).join(name),
            reason,
        }
    }

    /// The last complete epoch, if a checkpoint was written.
    pub fn latest(&self) -> Result<Option<usize>, TrainError> {
        let path = self.path.join(Self::LATEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Self::io(&path)(e)),
        };
        text.trim()
            .parse()
            .map(Some)
            .map_err(|_| TrainError::Record {
                path,
                reason: format!("expected an epoch number, got {:?}", truncate(&text)),
            })
    }

    /// The weights file of the latest checkpoint: the last completed epoch's model.
    pub fn latest_model(&self) -> Result<Option<PathBuf>, TrainError> {
        Ok(self
            .latest()?
            .map(|epoch| self.epoch_dir(epoch).join("model.bpk")))
    }

    /// Writes epoch `state.epoch`'s checkpoint: `parts` in [`PARTS`] order, and `best` (the
    /// best epoch's weights) when there is one. Then points `latest` at it and removes older
    /// epochs.
    pub(crate) fn write(
        &self,
        state: ResumeState,
        parts: &[Bytes],
        best: Option<&[u8]>,
    ) -> Result<(), TrainError> {
        let tmp = self.path.join(format!(".epoch-{}.tmp", state.epoch));
        let written = self.write_epoch(&tmp, state, parts, best);
        if written.is_err() {
            // A full disk: the partial directory goes, the previous checkpoint stays `latest`.
            let _ = std::fs::remove_dir_all(&tmp);
        }
        written
    }

    /// [`write`](Self::write)'s steps, in the order that keeps `latest` naming a complete
    /// checkpoint after a kill or a power cut at any point: each file flushed to disk, the
    /// directory renamed into place and the rename flushed, `latest` replaced (flushed the same
    /// way), and only then the older epochs removed.
    fn write_epoch(
        &self,
        tmp: &Path,
        mut state: ResumeState,
        parts: &[Bytes],
        best: Option<&[u8]>,
    ) -> Result<(), TrainError> {
        let epoch = state.epoch;
        if tmp.exists() {
            std::fs::remove_dir_all(tmp).map_err(Self::io(tmp))?;
        }
        std::fs::create_dir_all(tmp).map_err(Self::io(tmp))?;
        let mut files: Vec<(String, &[u8])> = PARTS
            .iter()
            .zip(parts)
            .map(|(p, b)| (format!("{p}.bpk"), &b[..]))
            .collect();
        if let Some(best) = best {
            files.push(("best.bpk".into(), best));
        }
        state.files.clear();
        for (name, bytes) in &files {
            write_synced(&tmp.join(name), bytes)?;
            state.files.insert(name.clone(), FileSum::of(bytes));
        }
        let json = serde_json::to_vec_pretty(&state).expect("state serialises");
        write_synced(&tmp.join(Self::STATE), &json)?;
        sync_dir(tmp)?;

        let dir = self.epoch_dir(epoch);
        if dir.exists() {
            // Left by a run killed between its rename and `latest`: never the one `latest` names.
            std::fs::remove_dir_all(&dir).map_err(Self::io(&dir))?;
        }
        std::fs::rename(tmp, &dir).map_err(Self::io(&dir))?;
        sync_dir(&self.path)?;
        write_atomic(
            &self.path.join(Self::LATEST),
            format!("{epoch}\n").as_bytes(),
        )?;
        self.remove_older_than(epoch);
        Ok(())
    }

    /// Removes the epoch directories other than `keep`, once `latest` names it on disk; a
    /// failure to remove one loses nothing.
    fn remove_older_than(&self, keep: usize) {
        if let Ok(entries) = std::fs::read_dir(&self.path) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let old = name
                    .strip_prefix("epoch-")
                    .and_then(|e| e.parse::<usize>().ok())
                    .is_some_and(|e| e != keep);
                if old {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }

    /// Removes what a process killed mid-write left behind: temporary files and directories
    /// (`*.tmp`), and epoch directories that `latest` does not name. Called when a run starts.
    pub(crate) fn remove_stale(&self) {
        remove_stale_temporaries(&self.path);
        if let Ok(Some(latest)) = self.latest() {
            self.remove_older_than(latest);
        }
    }

    /// Reads the latest checkpoint and checks it: its state file, that it belongs to a run
    /// with `fingerprint`, and every file's length and checksum.
    pub(crate) fn load(&self, fingerprint: u32) -> Result<Loaded, TrainError> {
        let epoch = self.latest()?.ok_or_else(|| TrainError::Record {
            path: self.path.clone(),
            reason: "no checkpoint to resume from (no `latest` file)".into(),
        })?;
        let dir = self.epoch_dir(epoch);
        let state_path = dir.join(Self::STATE);
        let text = read_limited(&state_path, 64 << 20)?;
        let state: ResumeState = serde_json::from_slice(&text).map_err(|e| TrainError::Record {
            path: state_path.clone(),
            reason: format!("not a kiln checkpoint state: {e}"),
        })?;
        let bad = |reason: String| TrainError::Record {
            path: state_path.clone(),
            reason,
        };
        if state.format != FORMAT || state.version != VERSION {
            return Err(bad(format!(
                "format {} version {}, expected {FORMAT} version {VERSION}",
                state.format, state.version
            )));
        }
        if state.epoch != epoch {
            return Err(bad(format!(
                "records epoch {} but sits in the directory of epoch {epoch}",
                state.epoch
            )));
        }
        if state.fingerprint != fingerprint {
            return Err(bad(
                "belongs to a run with another configuration (model, data or trainer options)"
                    .into(),
            ));
        }
        let read = |name: &str| -> Result<Option<Bytes>, TrainError> {
            let Some(sum) = state.files.get(name) else {
                return Ok(None);
            };
            let path = dir.join(name);
            let bytes = read_limited(&path, sum.len)?;
            let got = FileSum::of(&bytes);
            if got != *sum {
                return Err(TrainError::Record {
                    path,
                    reason: format!(
                        "corrupt: {} bytes with CRC-32 {:08x}, the checkpoint recorded {} bytes \
                         with {:08x}",
                        got.len, got.crc32, sum.len, sum.crc32
                    ),
                });
            }
            Ok(Some(Bytes::from_bytes_vec(bytes)))
        };
        let mut parts = Vec::new();
        for part in PARTS {
            let name = format!("{part}.bpk");
            parts.push(read(&name)?.ok_or_else(|| bad(format!("lists no {name}")))?);
        }
        let best = match read("best.bpk")? {
            Some(bytes) => {
                Some(
                    ModuleRecord::from_bytes(bytes).map_err(|e| TrainError::Record {
                        path: dir.join("best.bpk"),
                        reason: e.to_string(),
                    })?,
                )
            }
            None => None,
        };
        Ok(Loaded { state, parts, best })
    }
}

/// Reads a file of at most `limit` bytes: a file larger than its record says is corrupt, and
/// its size never sizes an allocation.
fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, TrainError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(CheckpointDir::io(path))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(CheckpointDir::io(path))?;
    if bytes.len() as u64 > limit {
        return Err(TrainError::Record {
            path: path.to_path_buf(),
            reason: format!("larger than the {limit} bytes the checkpoint recorded"),
        });
    }
    Ok(bytes)
}

fn truncate(text: &str) -> String {
    text.chars().take(40).collect()
}
