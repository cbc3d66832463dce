//! `kiln train --auto-fix`: a run that the diagnosis finds broken is trained again with the
//! repair for its finding (`kiln_train::auto_fix`), at most three times. Each attempt is a
//! whole run of its own in `DIR/attempts/N`; the best of them (lowest validation loss) becomes
//! the run in `DIR`, beside `repairs.json` (every attempt: its flags, the finding that led to
//! it, what it found, its scores) and `repairs.png` (the attempts' curves side by side).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use kiln::train::{
    Diagnosis, Finding, History, Knobs, PlotRun, RunDir, TrainerConfig, auto_fix, plot_histories,
};
use serde::Serialize;

use crate::args::TrainArgs;

use super::diagnose::DIAGNOSIS;
use super::out;
use super::spec::data_config;
use super::train::{default_run_dir, train};

/// The attempts' record in the run directory.
pub(super) const REPAIRS: &str = "repairs.json";
/// Where each attempt's run is kept, inside the run directory.
const ATTEMPTS: &str = "attempts";

/// What one attempt left: its run directory's diagnosis, history and scores.
#[derive(Debug, Clone)]
struct Outcome {
    dir: PathBuf,
    history: Option<History>,
    metrics: Option<serde_json::Value>,
    /// The error that ended it (a loss that became NaN), if one did.
    failed: Option<String>,
}

impl Outcome {
    fn best_val_loss(&self) -> Option<f64> {
        self.history.as_ref().and_then(|h| {
            h.epochs
                .iter()
                .map(|e| e.val_loss)
                .filter(|v| v.is_finite())
                .reduce(f64::min)
        })
    }
}

/// One attempt in `repairs.json`.
#[derive(Debug, Serialize)]
struct AttemptRecord {
    attempt: usize,
    dir: String,
    /// The flags changed from the command as given, in the order made.
    changes: Vec<String>,
    /// The finding the last change repairs.
    because: Option<Finding>,
    /// What this attempt's diagnosis found.
    findings: Vec<String>,
    best_val_loss: Option<f64>,
    test: Option<serde_json::Value>,
    failed: Option<String>,
}

/// `kiln train --auto-fix`.
pub(super) fn train_with_repairs(args: &TrainArgs) -> Result<()> {
    if args.resume.is_some() {
        bail!(
            "--auto-fix starts new runs; to continue one attempt, give --resume its directory \
             (DIR/attempts/N) without --auto-fix"
        );
    }
    let dir = match &args.out {
        Some(out) => out.clone(),
        None => default_run_dir(args.model, &data_config(args)),
    };
    let run = if args.overwrite {
        RunDir::replace(&dir)?
    } else {
        RunDir::create_new(&dir)?
    };
    let knobs = Knobs {
        lr: initial_lr(args),
        clip_norm: args.clip_norm,
        activation: args.activation,
        batch_norm: args.batch_norm,
        dropout: args.dropout,
        weight_decay: args.weight_decay,
    };
    let loud = !args.quiet;
    let attempts = auto_fix(knobs, |attempt, knobs, repaired| {
        let path = run.path.join(ATTEMPTS).join(attempt.to_string());
        if loud {
            match repaired {
                None => out(&format!(
                    "auto-fix: attempt {attempt}, the run as given ({})",
                    path.display()
                ))?,
                Some((finding, repair)) => out(&format!(
                    "auto-fix: attempt {attempt}: {} (epoch {}) found; trying {} ({})",
                    finding.kind.name(),
                    finding.epoch,
                    repair.flag(),
                    path.display()
                ))?,
            }
        }
        run_attempt(args, knobs, &path)
    })?;

    // Keep the attempt with the lowest validation loss; a tie keeps the earlier one.
    let kept = attempts
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.outcome.best_val_loss().map(|v| (i, v)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
        .unwrap_or(attempts.len() - 1);
    let mut changes: Vec<String> = Vec::new();
    let mut records = Vec::new();
    for (i, a) in attempts.iter().enumerate() {
        if let Some((_, repair)) = &a.repaired {
            changes.push(repair.flag());
        }
        records.push(AttemptRecord {
            attempt: i + 1,
            dir: if i == kept {
                ".".into()
            } else {
                format!("{ATTEMPTS}/{}", i + 1)
            },
            changes: changes.clone(),
            because: a.repaired.as_ref().map(|(f, _)| f.clone()),
            findings: a
                .diagnosis
                .findings
                .iter()
                .map(|f| format!("{} (epoch {})", f.kind.name(), f.epoch))
                .collect(),
            best_val_loss: a.outcome.best_val_loss(),
            test: a.outcome.metrics.as_ref().map(test_scores),
            failed: a.outcome.failed.clone(),
        });
    }
    let names: Vec<String> = records
        .iter()
        .map(|r| match r.changes.last() {
            None => format!("{}: as given", r.attempt),
            Some(_) => format!("{}: {}", r.attempt, r.changes.join(" ")),
        })
        .collect();
    let histories: Vec<(String, &History)> = attempts
        .iter()
        .zip(&names)
        .filter_map(|(a, name)| a.outcome.history.as_ref().map(|h| (name.clone(), h)))
        .collect();
    let plot: Vec<PlotRun> = histories
        .iter()
        .map(|(name, history)| PlotRun {
            name,
            history,
            best_epoch: None,
        })
        .collect();
    if !plot.is_empty() {
        plot_histories(&run.file("repairs.png"), &plot)?;
    }
    promote(&attempts[kept].outcome.dir, &run.path)?;
    run.write_json(
        REPAIRS,
        &serde_json::json!({ "kept": kept + 1, "attempts": records }),
    )?;
    if loud {
        out(&report(&records, kept, &run.path))?;
    }
    Ok(())
}

/// The learning rate the command trains with: its `--lr`, else the trainer's default.
fn initial_lr(args: &TrainArgs) -> f64 {
    args.lr.unwrap_or(TrainerConfig::DEFAULT_LR)
}

/// Trains one attempt into `path` with `knobs` in place of the command's own settings, and
/// reads back what it left.
fn run_attempt(args: &TrainArgs, knobs: &Knobs, path: &Path) -> Result<(Outcome, Diagnosis)> {
    let mut a = args.clone();
    a.auto_fix = false;
    a.overwrite = false;
    a.keep_failed = true;
    a.out = Some(path.to_path_buf());
    let mut set = |flag: &str| {
        if !a.given.iter().any(|g| g == flag) {
            a.given.push(flag.to_string());
        }
    };
    // The command's own rate (the model's default where none was given) unless repaired.
    if knobs.lr != initial_lr(args) {
        a.lr = Some(knobs.lr);
        set("lr");
    }
    if knobs.clip_norm != args.clip_norm {
        set("clip_norm");
    }
    if knobs.activation != args.activation {
        set("activation");
    }
    if knobs.batch_norm != args.batch_norm {
        set("batch_norm");
    }
    if knobs.dropout != args.dropout {
        set("dropout");
    }
    if knobs.weight_decay != args.weight_decay {
        set("weight_decay");
    }
    a.clip_norm = knobs.clip_norm;
    a.activation = knobs.activation;
    a.batch_norm = knobs.batch_norm;
    a.dropout = knobs.dropout;
    a.weight_decay = knobs.weight_decay;
    // A run whose loss became NaN is an attempt like any other: its diagnosis says why.
    let failed = train(&a).err().map(|e| format!("{e:#}"));
    let read = |name: &str| std::fs::read_to_string(path.join(name)).ok();
    let diagnosis: Diagnosis = match read(DIAGNOSIS) {
        Some(text) => serde_json::from_str(&text)
            .with_context(|| format!("reading {}", path.join(DIAGNOSIS).display()))?,
        None => bail!(
            "auto-fix: attempt in {} ended without a diagnosis: {}",
            path.display(),
            failed.unwrap_or_default()
        ),
    };
    let history = read("history.csv").and_then(|t| History::from_csv(&t).ok());
    let metrics = read("metrics.json").and_then(|t| serde_json::from_str(&t).ok());
    let outcome = Outcome {
        dir: path.to_path_buf(),
        history,
        metrics,
        failed,
    };
    Ok((outcome, diagnosis))
}

/// The test scores of a run's `metrics.json`.
fn test_scores(metrics: &serde_json::Value) -> serde_json::Value {
    let mut scores = serde_json::Map::new();
    if let Some(all) = metrics.as_object() {
        for (key, value) in all {
            if key.starts_with("test_") {
                scores.insert(key.clone(), value.clone());
            }
        }
    }
    serde_json::Value::Object(scores)
}

/// Moves the kept attempt's files up into the run directory.
fn promote(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        std::fs::rename(entry.path(), &target).with_context(|| {
            format!("moving {} to {}", entry.path().display(), target.display())
        })?;
    }
    std::fs::remove_dir(from).with_context(|| format!("removing {}", from.display()))?;
    let attempts = to.join(ATTEMPTS);
    if std::fs::read_dir(&attempts).is_ok_and(|mut d| d.next().is_none()) {
        std::fs::remove_dir(&attempts)?;
    }
    Ok(())
}

/// The attempts side by side, as the end of the run prints them.
fn report(records: &[AttemptRecord], kept: usize, dir: &Path) -> String {
    let mut lines = vec![format!(
        "auto-fix: {} attempt{}",
        records.len(),
        if records.len() == 1 { "" } else { "s" }
    )];
    let score = |r: &AttemptRecord| -> String {
        let test = r.test.as_ref().and_then(|t| t.as_object());
        let pick = |key: &str| test.and_then(|t| t.get(key)).and_then(|v| v.as_f64());
        match (pick("test_accuracy"), pick("test_r2")) {
            (Some(a), _) => format!("test accuracy {a:.4}"),
            (_, Some(r2)) => format!("test R² {r2:.4}"),
            _ => r.failed.as_deref().map_or("-".into(), |_| "failed".into()),
        }
    };
    for (i, r) in records.iter().enumerate() {
        lines.push(format!(
            "  {}. {:<36} best val_loss {:<10} {:<22} found: {}{}",
            r.attempt,
            r.changes
                .last()
                .cloned()
                .unwrap_or_else(|| "as given".into()),
            r.best_val_loss.map_or("-".into(), |v| format!("{v:.4}")),
            score(r),
            if r.findings.is_empty() {
                "nothing".into()
            } else {
                r.findings.join(", ")
            },
            if i == kept { "  <- kept" } else { "" }
        ));
    }
    lines.push(format!(
        "kept attempt {} in {} ({}: every attempt; repairs.png: their curves; the others in {}/)",
        kept + 1,
        dir.display(),
        REPAIRS,
        dir.join(ATTEMPTS).display()
    ));
    lines.join("\n") + "\n"
}
