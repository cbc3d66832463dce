//! `kiln train`: a new run, or one resumed from its last checkpoint.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use kiln::Device;
use kiln::backend;
use kiln::burn::module::Module;
use kiln::common::{Precision, thousands};
use kiln::train::{
    CsvLogger, DataProfile, FitResult, History, PlotRun, RunDir, TrainError, Trainer,
    TrainerConfig, Verbosity, checkpoint_bytes, diagnose, freeze, human_bytes, init_from,
    plot_confusion, plot_histories, weight_bytes, write_atomic,
};
use kiln::tune::{Storage, Study, Trial, open_storage};

use crate::args::{ModelKind, TrainArgs};
use crate::dataset::{DataConfig, Prepared};

use super::diagnose::{DIAGNOSIS, kept_epoch, record_gradients};
use super::distill::with_teacher;
use super::evaluate::{TARGET_SCALER, check_scaler, forecast, test_metrics};
use super::job::Job;
use super::perceptron::train_perceptron;
use super::predict::COLUMNS;
use super::report::{Report, print_metrics};
use super::spec::{ModelSpec, RunConfig, data_config, model_name, model_spec, trainer_config};
use super::tools::{run_name, summary_of};
use super::{err_line, out};

/// What `--init-from` loaded, left new and skipped.
const INIT: &str = "init.json";

/// Checkpoints above this size (1 GB) are announced before the run starts.
const LARGE_CHECKPOINT: u64 = 1_000_000_000;

/// Flags that may come with `--resume`: they change how the run is shown or how long it goes
/// on, not what it computes.
pub(super) const RESUME_FLAGS: [&str; 6] = [
    "resume",
    "epochs",
    "device",
    "devices",
    "quiet",
    "tune_trial",
];

/// Flags that may come with `--config`: where the run goes and what it runs on.
const CONFIG_FLAGS: [&str; 7] = [
    "config",
    "out",
    "overwrite",
    "device",
    "devices",
    "quiet",
    "tune_trial",
];

pub fn train(args: &TrainArgs) -> Result<()> {
    // Joined first, so that every message of a rank of an MPI job says which it is.
    super::job::Job::current()?;
    if args.auto_fix {
        Job::current()?.refuse("--auto-fix")?;
        return super::repair::train_with_repairs(args);
    }
    if let Some(dir) = &args.resume {
        return resume(args, dir);
    }
    if let Some(path) = &args.config {
        return train_config(args, path);
    }
    let (config, prepared) = new_config(args)?;
    train_new(args, &config, &prepared)
}

/// The configuration of a new run from the flags, and its data.
pub(super) fn new_config(args: &TrainArgs) -> Result<(RunConfig, Prepared)> {
    let data = data_config(args);
    let prepared = data.prepare(args.task, args.validation_split)?;
    let trainer = trainer_config(args, prepared.task);
    trainer.check().map_err(as_flag)?;

    let model = model_spec(args, &prepared)?;
    if args.lora.is_some() && args.init_from.is_none() {
        bail!("--lora adapts a trained model: give it with --init-from RUN_DIR_OR_FILE");
    }
    let config = RunConfig {
        kiln_version: env!("CARGO_PKG_VERSION").into(),
        model,
        data,
        trainer,
        save_best: args.save_best,
        init_from: args.init_from.clone(),
        init_skip: args.init_skip.clone(),
        teacher: None,
    };
    Ok((config, prepared))
}

/// The flags in `given` (argument ids) that are not `allowed`, as the command line spells them.
pub(super) fn flags_outside(given: &[String], allowed: &[&str]) -> Vec<String> {
    given
        .iter()
        .filter(|flag| !allowed.contains(&flag.as_str()))
        .map(|flag| format!("--{}", flag.replace('_', "-")))
        .collect()
}

/// `kiln train --config FILE`: a new run of the configuration a config.json holds.
fn train_config(args: &TrainArgs, path: &Path) -> Result<()> {
    let conflicting = flags_outside(&args.given, &CONFIG_FLAGS);
    if !conflicting.is_empty() {
        bail!(
            "--config {} sets the model, the data and the training; these flags conflict with \
             it: {} (only --out, --overwrite, --device, --devices and --quiet may come with it)",
            path.display(),
            conflicting.join(", ")
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--config: reading {}", path.display()))?;
    let mut config: RunConfig = serde_json::from_str(&text)
        .with_context(|| format!("--config {}: not a kiln run's config.json", path.display()))?;
    config.trainer.check().map_err(as_flag)?;
    // The devices of the run that wrote it are not this run's.
    config.trainer.devices.clear();
    config.kiln_version = env!("CARGO_PKG_VERSION").into();
    let prepared = config
        .data
        .prepare(Some(config.trainer.task), config.trainer.validation_split)?;
    train_new(args, &config, &prepared)
}

/// A new run of `config` in `--out` (or a new directory under runs/).
pub(super) fn train_new(args: &TrainArgs, config: &RunConfig, prepared: &Prepared) -> Result<()> {
    if !Job::current()?.writes() {
        // Another rank of an MPI job writes the run; this one trains beside it.
        let run = RunDir::create_new(private_run_dir())?;
        let trained = run_training(config, prepared, &run, args, Start::Fresh);
        let _ = std::fs::remove_dir_all(&run.path);
        return trained;
    }
    let run = match &args.out {
        Some(out) if args.overwrite => RunDir::replace(out)?,
        Some(out) => RunDir::create_new(out)?,
        None => RunDir::create_new(default_run_dir(kind_of(&config.model), &config.data))?,
    };
    let trained = (|| {
        run.write_json("config.json", &config)?;
        if let Some(scaler) = &prepared.scaler {
            run.write_json("scaler.json", scaler)?;
        }
        if let Some(targets) = &prepared.targets {
            run.write_json(TARGET_SCALER, targets)?;
        }
        run.write_json(COLUMNS, &prepared.columns)?;
        run_training(config, prepared, &run, args, Start::Fresh)
    })();
    // A run that failed before its first checkpoint (a bad --device, a model too large) has
    // nothing worth keeping: no half-made run directory is left behind.
    if trained.is_err() && !args.keep_failed && run.checkpoints().latest().ok().flatten().is_none()
    {
        let _ = std::fs::remove_dir_all(&run.path);
    }
    trained
}

/// `kiln train --resume DIR`: the run's saved configuration, from its last checkpoint.
pub(super) fn resume(args: &TrainArgs, dir: &std::path::Path) -> Result<()> {
    let conflicting = flags_outside(&args.given, &RESUME_FLAGS);
    if !conflicting.is_empty() {
        bail!(
            "--resume continues {} with the configuration it was started with; these flags \
             conflict with it: {} (only --epochs, --device, --devices and --quiet may come with --resume)",
            dir.display(),
            conflicting.join(", ")
        );
    }
    let run = RunDir::open(dir)?;
    let mut config: RunConfig = run.read_json("config.json")?;
    let checkpointed = !matches!(config.model, ModelSpec::Perceptron(_));
    if checkpointed && run.checkpoints().latest()?.is_none() {
        return Err(run.unfinished().into());
    }
    let more_epochs = args.given.iter().any(|f| f == "epochs");
    let mut start = Start::Resume;
    // A finished run (its metrics written) resumes only to train on, with more --epochs.
    if run.file("metrics.json").exists() {
        let metrics: serde_json::Value = run.read_json("metrics.json")?;
        let ran = metrics["epochs_run"].as_u64().unwrap_or(0) as usize;
        let stopped = metrics["stopped_early"].as_bool().unwrap_or(false);
        let how = if stopped {
            ", ended by early stopping"
        } else {
            ""
        };
        if !more_epochs || args.epochs <= ran {
            bail!(
                "{}: a finished run ({ran} epochs{how}): nothing to resume; to train it on, give \
                 --epochs larger than {ran} with --resume (it goes on from epoch {ran}, early \
                 stopping keeping its best value and starting its patience afresh)",
                dir.display()
            );
        }
        if stopped {
            start = Start::TrainOn;
        }
    }
    if more_epochs {
        config.trainer.epochs = args.epochs;
        config.trainer.check().map_err(as_flag)?;
        run.write_json("config.json", &config)?;
    }
    let prepared = config
        .data
        .prepare(Some(config.trainer.task), config.trainer.validation_split)?;
    check_scaler(&run, &config, &prepared)?;
    if Job::current()?.writes() {
        return run_training(&config, &prepared, &run, args, start);
    }
    // Another rank of an MPI job writes the run: this one resumes from a copy of it.
    let copy = RunDir::create_new(private_run_dir())?;
    copy_dir(&run.path, &copy.path)?;
    let trained = run_training(&config, &prepared, &copy, args, start);
    let _ = std::fs::remove_dir_all(&copy.path);
    trained
}

/// Where a rank other than 0 keeps the run it does not write.
fn private_run_dir() -> PathBuf {
    std::env::temp_dir().join(format!("kiln-rank-{}", std::process::id()))
}

/// Copies the files under `from` into `to`.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// `--tune-trial env#KEY`: the storage's URL is in [`STORAGE_ENV`].
pub(super) const STORAGE_FROM_ENV: &str = "env";

/// Where `kiln tune` gives its trial processes the study's storage URL.
pub(super) const STORAGE_ENV: &str = "KILN_TUNE_STORAGE";

/// The study trial `spec` (`STORAGE_URL#TRIAL_KEY`, or `env#TRIAL_KEY`) names. This process ends when its
/// standard input does: the `kiln tune` that started it is gone, and resumes it later.
fn attach_trial(spec: &str) -> Result<Trial> {
    let (url, id) = spec
        .rsplit_once('#')
        .and_then(|(url, id)| Some((url, id.parse::<i64>().ok()?)))
        .with_context(|| format!("--tune-trial `{spec}`: expected STORAGE_URL#TRIAL_KEY"))?;
    let url = match url {
        STORAGE_FROM_ENV => std::env::var(STORAGE_ENV)
            .with_context(|| format!("--tune-trial `{spec}`: {STORAGE_ENV} is not set"))?,
        url => url.to_string(),
    };
    let storage: Arc<dyn Storage> = Arc::from(open_storage(&url)?);
    let trial = Study::attach(storage, id)?;
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        std::process::exit(130);
    });
    Ok(trial)
}

/// How a training command starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Start {
    /// A new run.
    Fresh,
    /// From the run's last checkpoint, to the same end.
    Resume,
    /// From the last checkpoint of a run that early stopping ended, on to more epochs.
    TrainOn,
}

/// Trains the run's model (afresh, or from its last checkpoint), then evaluates and records it.
pub(super) fn run_training(
    config: &RunConfig,
    prepared: &Prepared,
    run: &RunDir,
    args: &TrainArgs,
    start: Start,
) -> Result<()> {
    let resume = start != Start::Fresh;
    let job = Job::current()?;
    if args.tune_trial.is_some() {
        job.refuse("a kiln tune trial")?;
    }
    let tune_trial = args.tune_trial.as_deref().map(attach_trial).transpose()?;
    let (backend, devices) = match &args.devices {
        Some(list) => backend::devices(list)?,
        None => backend::device(args.device.as_deref()).map(|(b, d)| (b, vec![d]))?,
    };
    let device = devices[0].clone();
    let mut trainer = config.trainer.clone();
    let precision = trainer.precision;
    if devices.len() > 1 {
        trainer.devices = devices.clone();
        trainer.check().map_err(as_flag)?;
    }
    trainer.verbosity = if args.quiet || !job.writes() {
        Verbosity::Quiet
    } else {
        Verbosity::auto()
    };
    if !args.quiet && job.writes() {
        err_line(&format!(
            "kiln: {} on {} ({} train / {} validation / {} test samples, {}) with backend \
             {backend}{}{}{}",
            model_name(&config.model),
            config.data.dataset,
            prepared.train.len(),
            prepared.valid.len(),
            prepared.test.len(),
            prepared.task,
            match devices.len() {
                1 => String::new(),
                n => format!(" on {n} devices"),
            },
            if resume { ", resumed" } else { "" },
            match job.size {
                1 => String::new(),
                n => format!(", {n} MPI ranks"),
            }
        ))?;
    }
    let fit = Fit {
        trainer,
        prepared,
        device: &device,
        run,
        start,
        save_best: config.save_best,
        init_from: config.init_from.as_deref(),
        init_skip: &config.init_skip,
        teacher: config.teacher.as_deref(),
        tune_trial: tune_trial.as_ref(),
    };
    device.seed(config.data.seed);
    let model = &config.model;
    let report = with_model!(
        model,
        &device,
        |fresh| fit.run(fresh)?,
        perceptron | cfg | {
            if resume {
                bail!("the perceptron trains in one pass without checkpoints: rerun it instead");
            }
            if devices.len() > 1 {
                bail!("the perceptron rule trains on one device: drop --devices");
            }
            if precision != Precision::F32 {
                bail!("the perceptron rule has no matrix products: drop --precision");
            }
            train_perceptron(
                cfg,
                prepared,
                fit.trainer.epochs,
                &device,
                run,
                fit.trainer.verbosity,
            )?
        }
    );
    let mut metrics = report.metrics_json(backend, devices.len(), model);
    metrics["ranks"] = job.size.into();
    metrics["precision"] = precision.name().into();
    metrics["precision_unit"] = precision.unit().into();
    run.write_json("metrics.json", &metrics)?;
    if !job.writes() {
        return Ok(());
    }
    if let Some(trial) = tune_trial.as_ref().filter(|t| t.was_pruned()) {
        // Its value: the best epoch it reported.
        trial.finish(Ok(f64::NAN))?;
    }
    print_metrics(&report.test, report.forecast.as_ref())?;
    out(&report.diagnosis.to_string())?;
    out(&format!("run directory: {}\n", run.path.display()))
}

/// One trainer run of a model, recorded in the run directory.
pub(super) struct Fit<'a> {
    pub(super) trainer: TrainerConfig,
    pub(super) prepared: &'a Prepared,
    pub(super) device: &'a Device,
    pub(super) run: &'a RunDir,
    pub(super) start: Start,
    pub(super) save_best: bool,
    /// Trained weights a fresh run starts from, and the module paths not loaded.
    pub(super) init_from: Option<&'a Path>,
    pub(super) init_skip: &'a [String],
    /// The run a student is distilled from.
    pub(super) teacher: Option<&'a Path>,
    /// The `kiln tune` trial this run is, which it reports to after every epoch.
    pub(super) tune_trial: Option<&'a Trial>,
}

impl Fit<'_> {
    /// Fits `model` (checkpointing every epoch into the run's `checkpoint/`), evaluates it on
    /// the test set and records the run. A diverged run keeps its last good epoch: its
    /// weights as `model.bpk` and the history up to it.
    pub(super) fn run<M: kiln::common::Model>(&self, model: M) -> Result<Report> {
        let run = self.run;
        self.trainer.check_memory(&model).map_err(as_flag)?;
        let quiet = self.trainer.verbosity == Verbosity::Quiet;
        let mut config = self.trainer.clone();
        // A resumed run's weights come from its checkpoint.
        let model = match (self.start, self.init_from) {
            (Start::Fresh, Some(source)) => {
                let (model, report) = init_from(model, source, self.init_skip).map_err(as_flag)?;
                run.write_json(INIT, &report)?;
                if !quiet {
                    err_line(report.to_string().trim_end())?;
                }
                // What the source did not provide (a new head) trains in full beside the
                // adapters; recorded, for a resumed run to rebuild the same model.
                if let Some(lora) = &mut config.lora {
                    lora.full.extend(report.new.iter().cloned());
                    let mut recorded: RunConfig = run.read_json("config.json")?;
                    recorded.trainer.lora = Some(lora.clone());
                    run.write_json("config.json", &recorded)?;
                }
                model
            }
            _ => model,
        };
        let model = freeze(model, &config.freeze).map_err(as_flag)?;
        let n_params = Module::num_params(&model);
        let checkpoint = checkpoint_bytes(n_params, &self.trainer.optimizer);
        if checkpoint > LARGE_CHECKPOINT && !quiet {
            err_line(&format!(
                "kiln: note: the model has {} parameters; each checkpoint will take about {} \
                 (weights, best weights and optimiser state; the run keeps the latest) and model.bpk {}",
                thousands(n_params),
                human_bytes(checkpoint),
                human_bytes(weight_bytes(n_params)),
            ))?;
        }
        let table = match &config.lora {
            // The trainer attaches the adapters; this copy only counts them.
            Some(lora) => summary_of(&lora.apply(model.clone()).map_err(as_flag)?, self.prepared)?,
            None => summary_of(&model, self.prepared)?,
        };
        run.write_text("summary.txt", &table)?;
        if !quiet {
            err_line(table.trim_end())?;
        }
        let checkpoints = run.checkpoints();
        let mut trainer = Trainer::new(config, self.device.clone())?
            .with_checkpoints(&checkpoints.path)
            .with_tensorboard(run.file("tensorboard"));
        if let Some(ranks) = Job::current()?.collective() {
            trainer = trainer.with_ranks(ranks);
        }
        if self.save_best {
            trainer = trainer.with_save_best(run.file("best.bpk"));
        }
        if let Some(teacher) = self.teacher {
            trainer = with_teacher(trainer, teacher, self.device)?;
        }
        match self.start {
            Start::Fresh => {}
            Start::Resume => trainer = trainer.resuming(),
            Start::TrainOn => trainer = trainer.resuming_past_early_stop(),
        }
        // history.csv and history.png every epoch, as Keras's CSVLogger: a long run can be
        // followed, and a killed one keeps its history.
        let (name, png) = (run_name(run), run.file("history.png"));
        trainer = trainer
            .with_callback(CsvLogger::new(run.file("history.csv")))
            .with_callback(move |history: &History| {
                let drawn = plot_histories(
                    &png,
                    &[PlotRun {
                        name: &name,
                        history,
                        best_epoch: None,
                    }],
                );
                if let Err(e) = drawn {
                    panic!("drawing {}: {e}", png.display());
                }
                ControlFlow::Continue(())
            });
        if let Some(trial) = self.tune_trial {
            trainer = trainer.with_callback(trial.pruning_callback(self.trainer.epochs));
        }
        let (train, valid) = (&self.prepared.train, &self.prepared.valid);
        let fit = match trainer.fit_with_validation(model, train.clone(), valid.clone()) {
            Ok(fit) => fit,
            Err(error) => {
                if let TrainError::NonFiniteLoss {
                    diagnosis,
                    gradients,
                    ..
                } = &error
                {
                    // The run that blew up is the one most worth a diagnosis.
                    record_gradients(run, gradients, self.start != Start::Fresh)?;
                    run.write_json(DIAGNOSIS, diagnosis)?;
                    if self.trainer.verbosity != Verbosity::Quiet {
                        eprint!("{diagnosis}");
                    }
                }
                if let TrainError::NonFiniteLoss { history, .. }
                | TrainError::OutputClosed { history } = &error
                {
                    run.write_text("history.csv", &history.to_csv())?;
                    if let Some(last_good) = checkpoints.latest_model()? {
                        let bytes = std::fs::read(&last_good)
                            .with_context(|| format!("keeping {}", last_good.display()))?;
                        write_atomic(&run.file(RunDir::MODEL), &bytes)?;
                    }
                }
                return Err(as_flag(error));
            }
        };
        let test = test_metrics(
            &fit.model,
            self.prepared,
            self.trainer.masked_lm,
            self.device,
        );
        let forecast = forecast(&fit.model, self.prepared, self.device);
        if fit.stopped_early && self.trainer.verbosity != Verbosity::Quiet {
            err_line(&early_stop_note(&self.trainer, &fit))?;
        }
        run.write_text("history.csv", &fit.history.to_csv())?;
        let name = run_name(run);
        plot_histories(
            &run.file("history.png"),
            &[PlotRun {
                name: &name,
                history: &fit.history,
                best_epoch: Some(fit.best_epoch),
            }],
        )?;
        if let Some(report) = &test.classes {
            plot_confusion(&run.file("confusion.png"), &report.names, &report.confusion)?;
        }
        run.save_model(fit.model.clone())?;
        // The trainer diagnosed this fit; a resumed run is diagnosed again over all its epochs.
        let profile = DataProfile::for_model::<M>(&self.prepared.train);
        let gradients = record_gradients(run, &fit.gradients, self.start != Start::Fresh)?;
        let mut diagnosis = diagnose(&fit.history, Some(&profile), &gradients);
        if let Some(epoch) = kept_epoch(&self.trainer, fit.best_epoch, fit.history.epochs.len()) {
            diagnosis = diagnosis.kept_epoch(epoch);
        }
        run.write_json(DIAGNOSIS, &diagnosis)?;
        Ok(Report::from_fit(
            &fit, test, forecast, n_params, &profile, diagnosis,
        ))
    }
}

/// A trainer option's error in the command line's words: the flag, not the library's field
/// (`--batch-size: must be at least 1`, not ``invalid trainer option `batch_size` ``).
pub(super) fn as_flag(error: TrainError) -> anyhow::Error {
    match error {
        TrainError::InvalidOption { option, reason } => {
            let flag = match option {
                "augmentation" => "augment".to_string(),
                "distillation" => "teacher".to_string(),
                other => other.replace('_', "-"),
            };
            anyhow::anyhow!("--{flag}: {reason}")
        }
        other => other.into(),
    }
}

/// What Keras prints when early stopping ends a run: the epoch it stopped at, and the epoch
/// whose weights were restored.
pub(super) fn early_stop_note<M>(trainer: &TrainerConfig, fit: &FitResult<M>) -> String {
    let restored = match &trainer.early_stopping {
        Some(rule) if rule.restore_best_weights => format!(
            "; restored the weights of epoch {} (the best {})",
            fit.best_epoch, rule.monitor
        ),
        Some(rule) => format!(
            "; kept the last epoch's weights (the best {} was epoch {})",
            rule.monitor, fit.best_epoch
        ),
        None => String::new(),
    };
    format!("Epoch {}: early stopping{restored}", fit.epochs_run)
}

/// The model family's word in run names, as `--model` spells it.
pub(super) fn model_word(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Mlp => "mlp",
        ModelKind::Perceptron => "perceptron",
        ModelKind::Cnn => "cnn",
        ModelKind::Lstm => "lstm",
        ModelKind::Gru => "gru",
        ModelKind::Transformer => "transformer",
    }
}

/// The model family of `spec`.
fn kind_of(spec: &ModelSpec) -> ModelKind {
    match spec {
        ModelSpec::Mlp(_) => ModelKind::Mlp,
        ModelSpec::Perceptron(_) => ModelKind::Perceptron,
        ModelSpec::Cnn(_) => ModelKind::Cnn,
        ModelSpec::Sequence(c) if c.cell == kiln::lstm::Cell::Gru => ModelKind::Gru,
        ModelSpec::Sequence(_) => ModelKind::Lstm,
        ModelSpec::Transformer(_) => ModelKind::Transformer,
    }
}

/// `runs/<model>-<dataset>-<time>/`, numbered when that is taken.
pub(super) fn default_run_dir(model: ModelKind, data: &DataConfig) -> PathBuf {
    let model = model_word(model);
    let base = PathBuf::from("runs").join(format!("{model}-{}-{}", data.short_name(), timestamp()));
    free_dir(base)
}

/// `base`, or `base-2`, `base-3`... the first that does not exist: two runs (or studies)
/// started in the same second are numbered, as Lightning numbers versions.
pub(super) fn free_dir(base: PathBuf) -> PathBuf {
    (1..)
        .map(|n| match n {
            1 => base.clone(),
            n => PathBuf::from(format!("{}-{n}", base.display())),
        })
        .find(|dir| !dir.exists())
        .expect("a free name")
}

/// UTC time as `YYYYMMDD-HHMMSS`.
pub(super) fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_the_documented_shape() {
        let t = timestamp();
        assert_eq!(t.len(), 15, "{t}");
        assert!(t.starts_with("20") && t.as_bytes()[8] == b'-', "{t}");
    }
}
