//! One trial: a `kiln train` process of its own, reporting to the study after every epoch.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context, Result};
use kiln::train::RunDir;
use kiln::tune::{Trial, TrialRecord, TrialState};

use super::super::spec::RunConfig;
use super::argv::TrainFlags;

/// How a worker runs its trials.
pub struct Worker<'a> {
    /// The study directory: trials go to `trials/NNNN`.
    pub dir: &'a Path,
    pub flags: &'a TrainFlags,
    /// Where the trial processes report: given them in `KILN_TUNE_STORAGE`, out of sight of
    /// `ps` (a PostgreSQL URL holds a password).
    pub storage_url: String,
    /// Rayon threads of each trial process.
    pub threads: usize,
    /// The keys of the trials this process is running (for the heartbeat).
    pub running: &'a Mutex<BTreeSet<i64>>,
}

/// A trial's run directory.
pub fn trial_dir(dir: &Path, number: u64) -> PathBuf {
    dir.join("trials").join(format!("{number:04}"))
}

impl Worker<'_> {
    /// Runs `trial` to its end and records how it ended.
    pub fn run(&self, trial: &Trial) -> Result<TrialRecord> {
        self.running
            .lock()
            .expect("heartbeat set")
            .insert(trial.id());
        let outcome = self.train(trial);
        self.running
            .lock()
            .expect("heartbeat set")
            .remove(&trial.id());
        let outcome = outcome?;
        // The trial process ended a pruned trial itself; the rest end here.
        let (_, record) = trial.study().storage().trial(trial.id())?;
        if record.state == TrialState::Pruned {
            return Ok(record);
        }
        let best = trial
            .study()
            .config()
            .direction
            .best(record.intermediate.iter().map(|(_, v)| *v));
        let outcome = match (outcome, best) {
            (Ok(()), Some(best)) => Ok(best),
            (Ok(()), None) => Err(format!(
                "it reported no finite {}",
                trial.study().config().objective
            )),
            (Err(reason), _) => Err(reason),
        };
        Ok(trial.finish(outcome)?)
    }

    /// Trains the trial in a process of its own: `Err(reason)` when it failed.
    fn train(&self, trial: &Trial) -> Result<std::result::Result<(), String>> {
        let run = trial_dir(self.dir, trial.number());
        let log_path = run.with_extension("log");
        std::fs::create_dir_all(run.parent().expect("trials/"))
            .with_context(|| format!("creating {}", run.display()))?;
        let spec = format!("{}#{}", super::super::train::STORAGE_FROM_ENV, trial.id());
        let mut args: Vec<String> = vec!["train".into()];
        let opened = run
            .join("config.json")
            .exists()
            .then(|| RunDir::open(&run).ok())
            .flatten();
        let checkpoint = opened
            .as_ref()
            .and_then(|r| r.checkpoints().latest().ok().flatten());
        // The epochs its metrics.json covers: a run that ended (at its last epoch, by early
        // stopping, or paused by ASHA at a rung) wrote them.
        let measured = opened
            .as_ref()
            .and_then(|r| r.read_json::<serde_json::Value>("metrics.json").ok())
            .map(|m| m["epochs_run"].as_u64().unwrap_or(0) as usize);
        // Marks a promoted trial's run until its process ends: a study killed meanwhile takes
        // it over as one to train on, not as one that ended at the rung.
        let promoted = run.with_extension("promoted");
        if trial.promoted() {
            File::create(&promoted).with_context(|| format!("creating {}", promoted.display()))?;
        }
        match (checkpoint, measured) {
            (Some(epoch), Some(ran)) if promoted.exists() || epoch > ran => {
                // Paused at a rung, promoted (and perhaps killed on the way on): it trains on
                // from its last checkpoint to the epochs it was given.
                let config: RunConfig = opened
                    .as_ref()
                    .expect("a checkpoint is in an opened run")
                    .read_json("config.json")?;
                args.extend([
                    "--resume".into(),
                    run.display().to_string(),
                    "--epochs".into(),
                    config.trainer.epochs.to_string(),
                ]);
            }
            // Ended before its worker died: nothing to run again.
            (_, Some(_)) => return Ok(Ok(())),
            (Some(_), None) => args.extend(["--resume".into(), run.display().to_string()]),
            (None, None) => {
                args.extend(self.flags.trial(trial.params()));
                args.extend(["--out".into(), run.display().to_string()]);
                if run.exists() {
                    args.push("--overwrite".into());
                }
            }
        }
        args.extend(["--quiet".into(), "--tune-trial".into(), spec]);
        // Every process of the trial (one per promotion or takeover) appends to its log.
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let earlier = log.metadata().map_or(0, |m| m.len() as usize);
        let exe = std::env::current_exe().context("finding the kiln executable")?;
        let mut child = Command::new(&exe)
            .args(&args)
            .env("RAYON_NUM_THREADS", self.threads.to_string())
            .env(super::super::train::STORAGE_ENV, &self.storage_url)
            // The trial process reads its standard input to its end: when this process dies,
            // the pipe closes and the trial stops too, to be resumed with the study.
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| self.spawn_failure(&exe))?;
        let stdin = child.stdin.take();
        let status = child.wait().context("waiting for a trial")?;
        drop(stdin);
        let _ = std::fs::remove_file(&promoted);
        if status.success() {
            return Ok(Ok(()));
        }
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        // This process's lines only.
        let text = text.get(earlier..).unwrap_or(&text);
        let reason = text
            .lines()
            .rev()
            .find(|l| l.starts_with("error:"))
            .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()))
            .map_or_else(
                || format!("kiln train ended with {status}"),
                |l| l.trim_start_matches("error:").trim().to_string(),
            );
        Ok(Err(reason))
    }

    /// What to say when a trial's process cannot start. A kiln binary rebuilt or removed
    /// while its study runs is the usual cause: Linux then names this process's executable
    /// `PATH (deleted)`.
    fn spawn_failure(&self, exe: &Path) -> String {
        if exe.exists() {
            return "starting a trial's kiln train".into();
        }
        let shown = exe.display().to_string();
        format!(
            "starting a trial's kiln train: the kiln executable this study started from, {}, \
             was replaced or removed while it ran (a rebuild?); go on with the kiln there now: \
             kiln tune --resume {}",
            shown.trim_end_matches(" (deleted)"),
            self.dir.display()
        )
    }
}
