//! `kiln tune`: a hyperparameter study over `kiln train`'s flags.

mod argv;
mod outputs;
mod worker;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kiln::tune::{
    Pruner, Sampler, Storage, Study, StudyConfig, TpeConfig, TrialRecord, now, open_storage,
    this_owner,
};
use serde::{Deserialize, Serialize};

use crate::args::TuneArgs;

pub use argv::reorder;
use argv::{TrainFlags, train_flags};
use worker::Worker;

use super::err_line;

/// The study directory's record of where its study lives.
const STUDY_FILE: &str = "tune.json";

/// Seconds between the heartbeats of this process's running trials.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// Flags that may come with `--resume`.
const RESUME_FLAGS: [&str; 7] = [
    "resume",
    "train",
    "trials",
    "time_budget",
    "epoch_budget",
    "workers",
    "quiet",
];

/// `DIR/tune.json`.
#[derive(Debug, Serialize, Deserialize)]
struct StudyFile {
    /// The study's name in its storage.
    study: String,
    /// Its storage; `None`: `DIR/study.db`.
    storage: Option<String>,
}

pub fn tune(args: &TuneArgs) -> Result<()> {
    let (dir, study, flags, url) = match &args.resume {
        Some(dir) => resume(args, dir)?,
        None => create(args)?,
    };
    if !args.quiet {
        let config = study.config();
        let space: Vec<String> = config
            .space
            .params
            .iter()
            .map(|(n, d)| format!("--{n} {d}"))
            .collect();
        err_line(&format!(
            "kiln tune: {} ({} sampler, {} pruner) over {}; {} worker{}; study in {}",
            config.objective,
            config.sampler.name(),
            config.pruner.name(),
            space.join(" "),
            args.workers,
            if args.workers == 1 { "" } else { "s" },
            study.storage().url()
        ))?;
    }
    run_workers(args, &dir, &study, &flags, url)?;
    outputs::finish(&dir, &study)
}

/// A new study from the command line.
fn create(args: &TuneArgs) -> Result<(PathBuf, Study, TrainFlags, String)> {
    let flags = train_flags(&args.train)?;
    let bounded = args.trials.is_some()
        || args.time_budget.is_some()
        || args.epoch_budget.is_some()
        || args.sampler == "grid";
    if !bounded {
        bail!("give the study a budget: --trials N, --time-budget 30m or --epoch-budget N");
    }
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => default_dir(&flags),
    };
    if dir.join(STUDY_FILE).exists() {
        bail!(
            "{} holds a study already: go on with it with kiln tune --resume {0}, or give \
             another --dir",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = match &args.study {
        Some(name) => name.clone(),
        None => dir
            .canonicalize()?
            .file_name()
            .map_or_else(|| "study".into(), |n| n.to_string_lossy().into_owned()),
    };
    let mut config = StudyConfig::new(&name, flags.space.clone(), &args.objective);
    config.sampler = match args.sampler.as_str() {
        "grid" => Sampler::Grid {
            points: args.grid_points,
        },
        "tpe" => Sampler::Tpe(TpeConfig {
            startup_trials: args.startup_trials,
            gamma: args.gamma,
            ..TpeConfig::default()
        }),
        other => Sampler::named(other)?,
    };
    config.pruner = match Pruner::named(&args.pruner)? {
        Pruner::Asha { .. } => Pruner::Asha {
            min_epochs: args.min_epochs,
            reduction_factor: args.reduction_factor,
        },
        other => other,
    };
    config.seed = args.study_seed;
    config.budget.trials = args.trials;
    config.budget.epochs = args.epoch_budget;
    config.extra = serde_json::json!({ "train": flags.fixed });
    config.check()?;
    let (storage, url) = storage_for(&dir, args.storage.as_deref())?;
    let study = Study::open(storage, config)?;
    let record = StudyFile {
        study: name,
        storage: args.storage.clone(),
    };
    kiln::train::write_atomic(
        &dir.join(STUDY_FILE),
        serde_json::to_string_pretty(&record)?.as_bytes(),
    )?;
    Ok((dir, study, flags, url))
}

/// The study in `dir`, to go on with.
fn resume(args: &TuneArgs, dir: &Path) -> Result<(PathBuf, Study, TrainFlags, String)> {
    let mut conflicting = super::train::flags_outside(&args.given, &RESUME_FLAGS);
    conflicting.extend(args.train.iter().filter(|t| t.starts_with("--")).cloned());
    if !conflicting.is_empty() {
        bail!(
            "--resume goes on with the study in {} as it was started; only --trials, \
             --time-budget, --epoch-budget, --workers and --quiet may come with it (given: {})",
            dir.display(),
            conflicting.join(", ")
        );
    }
    let path = dir.join(STUDY_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: no study to resume", path.display()))?;
    let record: StudyFile =
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    let (storage, url) = storage_for(dir, record.storage.as_deref())?;
    let stored = Study::load(storage.clone(), &record.study)?;
    let mut config: StudyConfig = stored.config().clone();
    if args.trials.is_some() {
        config.budget.trials = args.trials;
    }
    if args.epoch_budget.is_some() {
        config.budget.epochs = args.epoch_budget;
    }
    let fixed: Vec<String> = serde_json::from_value(config.extra["train"].clone())
        .with_context(|| format!("study `{}`: its fixed flags do not read", record.study))?;
    let flags = TrainFlags {
        fixed,
        space: config.space.clone(),
    };
    let study = Study::open(storage, config)?;
    Ok((dir.to_path_buf(), study, flags, url))
}

/// The storage at `url`, else `DIR/study.db`, and its URL (with its password, for the trials).
fn storage_for(dir: &Path, url: Option<&str>) -> Result<(Arc<dyn Storage>, String)> {
    let url = match url {
        Some(url) => url.to_string(),
        None => format!(
            "sqlite:{}",
            dir.canonicalize()
                .with_context(|| format!("opening {}", dir.display()))?
                .join("study.db")
                .display()
        ),
    };
    Ok((Arc::from(open_storage(&url)?), url))
}

/// `tunes/<model>-<dataset>-<time>`.
fn default_dir(flags: &TrainFlags) -> PathBuf {
    let value = |name: &str, default: &str| -> String {
        flags
            .fixed
            .iter()
            .position(|f| f == &format!("--{name}"))
            .and_then(|i| flags.fixed.get(i + 1))
            .map_or_else(|| default.to_string(), Clone::clone)
    };
    let dataset = value("dataset", "digits");
    let dataset = match dataset.split_once(':') {
        Some((_, path)) => Path::new(path)
            .file_stem()
            .map_or_else(|| "data".into(), |s| s.to_string_lossy().into_owned()),
        None => dataset,
    };
    let base = format!(
        "tunes/{}-{dataset}-{}",
        value("model", "mlp"),
        super::train::timestamp()
    );
    super::train::free_dir(PathBuf::from(base))
}

/// Runs `args.workers` trials at a time until the study's budget is spent, with a heartbeat
/// for the running ones.
fn run_workers(
    args: &TuneArgs,
    dir: &Path,
    study: &Study,
    flags: &TrainFlags,
    storage_url: String,
) -> Result<()> {
    if args.workers == 0 {
        bail!("--workers: must be at least 1");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let running = Mutex::new(BTreeSet::new());
    let worker = Worker {
        dir,
        flags,
        storage_url,
        threads: (cores / args.workers).max(1),
        running: &running,
    };
    let deadline = args.time_budget.map(|d| Instant::now() + d);
    let owner = this_owner();
    let done = AtomicBool::new(false);
    let best = Mutex::new(None::<TrialRecord>);
    let work = || -> Result<()> {
        while deadline.is_none_or(|d| Instant::now() < d) {
            let Some(trial) = study.ask(&owner)? else {
                break;
            };
            let record = worker.run(&trial)?;
            outputs::progress(dir, study, &record, &best, args.quiet)?;
        }
        Ok(())
    };
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut last = Instant::now();
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(200));
                if last.elapsed() >= HEARTBEAT {
                    let ids: Vec<i64> = running
                        .lock()
                        .expect("heartbeat set")
                        .iter()
                        .copied()
                        .collect();
                    // A missed heartbeat only makes a trial look abandoned later.
                    let _ = study.storage().heartbeat(&ids, now());
                    last = Instant::now();
                }
            }
        });
        let handles: Vec<_> = (0..args.workers).map(|_| scope.spawn(work)).collect();
        let results: Vec<Result<()>> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a tuning worker panicked")))
            })
            .collect();
        done.store(true, Ordering::SeqCst);
        results.into_iter().collect::<Result<()>>()
    })
}
