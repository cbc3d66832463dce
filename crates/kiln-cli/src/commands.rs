//! What `kiln train` and `kiln eval` do.

use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use kiln::Device;
use kiln::backend::{self, Backend};
use kiln::burn::module::Module;
use kiln::burn::tensor::{Int, Tensor, TensorData};
use kiln::cnn::{Cnn, CnnConfig};
use kiln::datasets::{Data, ForecastReport, Targets};
use kiln::fnn::{Mlp, MlpConfig, PerceptronConfig};
use kiln::lstm::{Cell, Pooling, SequenceModel, SequenceModelConfig};
use kiln::train::{
    Augmentation, CsvLogger, EarlyStopping, FitResult, GradientClip, History, LrFinder, Metrics,
    OptimizerConfig, PlotRun, RunDir, Task, TrainError, Trainer, TrainerConfig, Verbosity,
    evaluate, export_safetensors, import_safetensors, plot_confusion, plot_histories, write_atomic,
};
use kiln::transformer::{
    Features, Positions, SequenceClassifier, SequenceClassifierConfig, Tokens,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::args::{
    EvalArgs, ExportArgs, ImportArgs, LrFindArgs, ModelKind, PlotArgs, PredictArgs, TrainArgs,
};
use crate::dataset::{DataConfig, Prepared, Scaler, SequenceOptions};

/// Builds the model `$spec` describes as `$m` and evaluates `$body` with it; the perceptron,
/// which is no trainer model, goes to `$perceptron` with its config as `$cfg`.
macro_rules! with_model {
    ($spec:expr, $device:expr, |$m:ident| $body:expr, perceptron |$cfg:ident| $perceptron:expr) => {
        match $spec {
            ModelSpec::Mlp(c) => {
                let $m = c.init($device);
                $body
            }
            ModelSpec::Cnn(c) => {
                let $m = c.init($device);
                $body
            }
            ModelSpec::Sequence(c) => {
                let $m = c.init($device);
                $body
            }
            ModelSpec::Transformer(t) => match t.input {
                TransformerInput::Tokens { .. } => {
                    let $m = t.tokens($device);
                    $body
                }
                TransformerInput::Features { .. } => {
                    let $m = t.features($device);
                    $body
                }
            },
            ModelSpec::Perceptron($cfg) => $perceptron,
        }
    };
}

/// The model's architecture, as `config.json` keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelSpec {
    Mlp(MlpConfig),
    Cnn(CnnConfig),
    Sequence(SequenceModelConfig),
    Transformer(TransformerSpec),
    Perceptron(PerceptronConfig),
}

/// A Transformer and what it reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransformerSpec {
    pub config: SequenceClassifierConfig,
    pub input: TransformerInput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransformerInput {
    /// Token ids from a vocabulary of this size.
    Tokens { vocab_size: usize },
    /// Real-valued steps of this many features.
    Features { d_input: usize },
}

impl TransformerSpec {
    fn tokens(&self, device: &Device) -> SequenceClassifier<Tokens> {
        match self.input {
            TransformerInput::Tokens { vocab_size } => self.config.init_tokens(vocab_size, device),
            TransformerInput::Features { .. } => unreachable!("checked by the caller"),
        }
    }

    fn features(&self, device: &Device) -> SequenceClassifier<Features> {
        match self.input {
            TransformerInput::Features { d_input } => self.config.init_features(d_input, device),
            TransformerInput::Tokens { .. } => unreachable!("checked by the caller"),
        }
    }
}

/// Everything needed to rerun or re-evaluate a run: `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    pub kiln_version: String,
    pub model: ModelSpec,
    pub data: DataConfig,
    pub trainer: TrainerConfig,
    /// Keep the best epoch's weights in `best.bpk`.
    #[serde(default)]
    pub save_best: bool,
}

const EVAL_BATCH: usize = 256;

/// Flags that may come with `--resume`: they change how the run is shown or how long it goes
/// on, not what it computes.
const RESUME_FLAGS: [&str; 5] = ["resume", "epochs", "device", "devices", "quiet"];

pub fn train(args: &TrainArgs) -> Result<()> {
    if let Some(dir) = &args.resume {
        return resume(args, dir);
    }
    let data = data_config(args);
    let prepared = data.prepare(args.task, args.validation_split)?;
    let trainer = trainer_config(args, prepared.task);
    trainer.check().map_err(as_flag)?;

    let model = model_spec(args, &prepared)?;
    let run = match &args.out {
        Some(out) if args.overwrite => RunDir::replace(out)?,
        Some(out) => RunDir::create_new(out)?,
        None => RunDir::create_new(default_run_dir(args, &data))?,
    };
    let config = RunConfig {
        kiln_version: env!("CARGO_PKG_VERSION").into(),
        model,
        data,
        trainer,
        save_best: args.save_best,
    };
    let trained = (|| {
        run.write_json("config.json", &config)?;
        if let Some(scaler) = &prepared.scaler {
            run.write_json("scaler.json", scaler)?;
        }
        run_training(&config, &prepared, &run, args, Start::Fresh)
    })();
    // A run that failed before its first checkpoint (a bad --device, a model too large) has
    // nothing worth keeping: no half-made run directory is left behind.
    if trained.is_err() && run.checkpoints().latest().ok().flatten().is_none() {
        let _ = std::fs::remove_dir_all(&run.path);
    }
    trained
}

/// Where the data comes from and how it is prepared, from the flags.
fn data_config(args: &TrainArgs) -> DataConfig {
    DataConfig {
        dataset: args.dataset.clone(),
        target: args.target.clone(),
        test_split: args.test_split,
        seed: args.seed,
        normalize: args.normalize,
        sequence: SequenceOptions {
            seq_len: args.seq_len,
            text_column: args.text_column.clone(),
            tokenizer: args.tokenizer,
            vocab_size: args.vocab_size,
            min_freq: args.min_freq,
            column: args.column.clone(),
            horizon: args.horizon,
            season: args.season,
        },
    }
}

/// `kiln train --resume DIR`: the run's saved configuration, from its last checkpoint.
fn resume(args: &TrainArgs, dir: &std::path::Path) -> Result<()> {
    let conflicting: Vec<String> = args
        .given
        .iter()
        .filter(|flag| !RESUME_FLAGS.contains(&flag.as_str()))
        .map(|flag| format!("--{}", flag.replace('_', "-")))
        .collect();
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
    run_training(&config, &prepared, &run, args, start)
}

/// How a training command starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// A new run.
    Fresh,
    /// From the run's last checkpoint, to the same end.
    Resume,
    /// From the last checkpoint of a run that early stopping ended, on to more epochs.
    TrainOn,
}

/// Trains the run's model (afresh, or from its last checkpoint), then evaluates and records it.
fn run_training(
    config: &RunConfig,
    prepared: &Prepared,
    run: &RunDir,
    args: &TrainArgs,
    start: Start,
) -> Result<()> {
    let resume = start != Start::Fresh;
    let (backend, devices) = match &args.devices {
        Some(list) => backend::devices(list)?,
        None => backend::device(args.device.as_deref()).map(|(b, d)| (b, vec![d]))?,
    };
    let device = devices[0].clone();
    let mut trainer = config.trainer.clone();
    if devices.len() > 1 {
        trainer.devices = devices.clone();
        trainer.check().map_err(as_flag)?;
    }
    trainer.verbosity = if args.quiet {
        Verbosity::Quiet
    } else {
        Verbosity::auto()
    };
    if !args.quiet {
        err_line(&format!(
            "kiln: {} on {} ({} train / {} validation / {} test samples, {}) with backend \
             {backend}{}{}",
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
            if resume { ", resumed" } else { "" }
        ))?;
    }
    let fit = Fit {
        trainer,
        prepared,
        device: &device,
        run,
        start,
        save_best: config.save_best,
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
            perceptron(cfg, prepared, fit.trainer.epochs, &device, run)?
        }
    );
    let metrics = report.metrics_json(backend, devices.len(), model);
    run.write_json("metrics.json", &metrics)?;
    print_metrics(&report.test, report.forecast.as_ref())?;
    out(&format!("run directory: {}\n", run.path.display()))
}

/// The scaling saved with a run must be the one its data gives now.
fn check_scaler(run: &RunDir, config: &RunConfig, prepared: &Prepared) -> Result<()> {
    if let Some(scaler) = &prepared.scaler {
        let saved: Scaler = run.read_json("scaler.json")?;
        if &saved != scaler {
            bail!(
                "{}: the data changed since this run was trained (its scaling differs)",
                config.data.dataset
            );
        }
    }
    Ok(())
}

/// A run directory with its weights: an unfinished run (killed, or failed) is an error that
/// says so and how to continue it.
fn open_finished(dir: &std::path::Path) -> Result<RunDir> {
    let run = RunDir::open(dir)?;
    if !run.file(RunDir::MODEL).exists() {
        return Err(run.unfinished().into());
    }
    Ok(run)
}

pub fn eval(args: &EvalArgs) -> Result<()> {
    let run = open_finished(&args.run)?;
    let config: RunConfig = run.read_json("config.json")?;
    let (backend, device) = backend::device(args.device.as_deref())?;
    let prepared = config
        .data
        .prepare(Some(config.trainer.task), config.trainer.validation_split)?;
    check_scaler(&run, &config, &prepared)?;
    let (test, forecast) = with_model!(
        &config.model,
        &device,
        |fresh| reload_and_evaluate(&run, fresh, &prepared, &device)?,
        perceptron | cfg | {
            let model = run.load_model(cfg.init(&device))?;
            let accuracy = perceptron_accuracy(&model, &prepared.test, &device);
            (classification_only(accuracy), None)
        }
    );
    err_line(&format!(
        "kiln: evaluated {} with backend {backend}",
        run.path.display()
    ))?;
    print_metrics(&test, forecast.as_ref())
}

/// One trainer run of a model, recorded in the run directory.
struct Fit<'a> {
    trainer: TrainerConfig,
    prepared: &'a Prepared,
    device: &'a Device,
    run: &'a RunDir,
    start: Start,
    save_best: bool,
}

/// `kiln lr-find`: the learning-rate finder on the training split of `kiln train`'s data, with
/// its model, optimiser and batch size. Writes `lr_find.csv` and `lr_find.png`.
pub fn lr_find(args: &LrFindArgs) -> Result<()> {
    let t = &args.train;
    refuse_training_flags("lr-find", t)?;
    let (_, device) = backend::device(t.device.as_deref())?;
    let data = data_config(t);
    let prepared = data.prepare(t.task, t.validation_split)?;
    let trainer = trainer_config(t, prepared.task);
    let model = model_spec(t, &prepared)?;
    let finder = LrFinder {
        min_lr: args.min_lr,
        max_lr: args.max_lr,
        steps: args.steps,
        ..LrFinder::default()
    };
    device.seed(t.seed);
    let result = with_model!(
        &model,
        &device,
        |fresh| finder.run(&fresh, &prepared.train, &trainer, &device)?,
        perceptron
            | _cfg
            | bail!("the perceptron rule has no learning rate to search: it takes steps of 1")
    );
    let dir = t.out.clone().unwrap_or_else(|| {
        PathBuf::from("runs").join(format!("lr-find-{}-{}", data.short_name(), timestamp()))
    });
    let run = RunDir::create(&dir)?;
    run.write_text("lr_find.csv", &result.to_csv())?;
    result.plot(&run.file("lr_find.png"))?;
    let suggestion = match result.suggestion {
        Some(lr) => format!("suggested learning rate: {lr:.3e}\n"),
        None => {
            "no suggestion: the loss diverged too early; lower --min-lr or raise --steps\n".into()
        }
    };
    out(&format!(
        "{suggestion}{} steps from {:.1e} to {:.1e}: {}\n",
        result.lrs.len(),
        finder.min_lr,
        result.lrs.last().copied().unwrap_or(finder.min_lr),
        run.path.display()
    ))
}

/// `kiln export`: a run's weights as safetensors, under PyTorch's names and layouts.
pub fn export(args: &ExportArgs) -> Result<()> {
    let run = RunDir::open(&args.run)?;
    let config: RunConfig = run.read_json("config.json")?;
    let (_, device) = backend::device(args.device.as_deref())?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| run.file("model.safetensors"));
    with_model!(
        &config.model,
        &device,
        |fresh| export_safetensors(&run.load_model(fresh)?, &output)?,
        perceptron | cfg | export_safetensors(&run.load_model(cfg.init(&device))?, &output)?
    );
    out(&format!("{}\n", output.display()))
}

/// `kiln import`: weights from a safetensors file (PyTorch's names and layouts) into a run's
/// model, saved as its `model.bpk` for `kiln eval` and `kiln predict`.
pub fn import(args: &ImportArgs) -> Result<()> {
    let run = RunDir::open(&args.run)?;
    let config: RunConfig = run.read_json("config.json")?;
    let (_, device) = backend::device(args.device.as_deref())?;
    with_model!(
        &config.model,
        &device,
        |fresh| run.save_model(import_safetensors(fresh, &args.input)?)?,
        perceptron | cfg | run.save_model(import_safetensors(cfg.init(&device), &args.input)?)?
    );
    out(&format!(
        "{} imported into {}\n",
        args.input.display(),
        run.file(RunDir::MODEL).display()
    ))
}

/// A run's name in pictures: its directory's.
fn run_name(run: &RunDir) -> String {
    run.path.file_name().map_or_else(
        || run.path.display().to_string(),
        |n| n.to_string_lossy().into(),
    )
}

/// `kiln plot`: the training curves of one or several runs, side by side.
pub fn plot(args: &PlotArgs) -> Result<()> {
    let mut runs = Vec::new();
    for dir in &args.run {
        let run = RunDir::open(dir)?;
        let path = run.file("history.csv");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let history =
            History::from_csv(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let best_epoch = std::fs::read_to_string(run.file("metrics.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|m| m["best_epoch"].as_u64())
            .map(|e| e as usize);
        runs.push((run_name(&run), history, best_epoch));
    }
    let output = match (&args.output, args.run.as_slice()) {
        (Some(path), _) => path.clone(),
        (None, [one]) => one.join("history.png"),
        (None, _) => PathBuf::from("runs.png"),
    };
    let pictures: Vec<PlotRun> = runs
        .iter()
        .map(|(name, history, best_epoch)| PlotRun {
            name,
            history,
            best_epoch: *best_epoch,
        })
        .collect();
    plot_histories(&output, &pictures)?;
    out(&format!("{}\n", output.display()))
}

/// A model's summary table for the samples of `data`.
fn summary_of<M: kiln::common::Model>(model: &M, data: &Prepared) -> String {
    kiln::common::summary(model, &data.train.sample_shape).to_string()
}

/// The perceptron's one layer, as a summary table row would show it.
fn perceptron_summary(cfg: &PerceptronConfig, device: &Device) -> String {
    let n = Module::num_params(&cfg.init(device));
    format!(
        "Model: \"Perceptron\" (input (None, {}))\nweights and bias: {n} parameters, step output (None, 1)\n",
        cfg.d_input
    )
}

/// `kiln summary` and `kiln lr-find` take `kiln train`'s model and data flags; those that only
/// a training run uses are refused rather than ignored.
fn refuse_training_flags(command: &str, args: &TrainArgs) -> Result<()> {
    let ignored: Vec<String> = ["resume", "epochs", "save_best", "overwrite"]
        .into_iter()
        .filter(|flag| args.given.iter().any(|g| g == flag))
        .map(|flag| format!("--{}", flag.replace('_', "-")))
        .collect();
    if !ignored.is_empty() {
        bail!(
            "kiln {command} trains no run: {} would be ignored; drop {}",
            ignored.join(", "),
            if ignored.len() == 1 { "it" } else { "them" }
        );
    }
    Ok(())
}

/// `kiln summary`: the model `kiln train` would build with these flags, as a table.
pub fn summary(args: &TrainArgs) -> Result<()> {
    refuse_training_flags("summary", args)?;
    let (_, device) = backend::device(args.device.as_deref())?;
    let data = data_config(args);
    let prepared = data.prepare(args.task, args.validation_split)?;
    let model = model_spec(args, &prepared)?;
    device.seed(args.seed);
    let text = with_model!(
        &model,
        &device,
        |m| summary_of(&m, &prepared),
        perceptron | cfg | perceptron_summary(cfg, &device)
    );
    out(&text)
}

impl Fit<'_> {
    /// Fits `model` (checkpointing every epoch into the run's `checkpoint/`), evaluates it on
    /// the test set and records the run. A diverged run keeps its last good epoch: its
    /// weights as `model.bpk` and the history up to it.
    fn run<M: kiln::common::Model>(&self, model: M) -> Result<Report> {
        let run = self.run;
        let table = summary_of(&model, self.prepared);
        run.write_text("summary.txt", &table)?;
        if self.trainer.verbosity != Verbosity::Quiet {
            err_line(table.trim_end())?;
        }
        let checkpoints = run.checkpoints();
        let mut trainer = Trainer::new(self.trainer.clone(), self.device.clone())?
            .with_checkpoints(&checkpoints.path);
        if self.save_best {
            trainer = trainer.with_save_best(run.file("best.bpk"));
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
        let (train, valid) = (&self.prepared.train, &self.prepared.valid);
        let fit = match trainer.fit_with_validation(model, train.clone(), valid.clone()) {
            Ok(fit) => fit,
            Err(error) => {
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
        let test = evaluate(
            &fit.model,
            &self.prepared.test,
            self.prepared.task,
            EVAL_BATCH,
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
        let n_params = Module::num_params(&fit.model);
        run.save_model(fit.model.clone())?;
        Ok(Report::from_fit(&fit, test, forecast, n_params))
    }
}

/// A trainer option's error in the command line's words: the flag, not the library's field
/// (`--batch-size: must be at least 1`, not ``invalid trainer option `batch_size` ``).
fn as_flag(error: TrainError) -> anyhow::Error {
    match error {
        TrainError::InvalidOption { option, reason } => {
            let flag = match option {
                "augmentation" => "augment".to_string(),
                other => other.replace('_', "-"),
            };
            anyhow::anyhow!("--{flag}: {reason}")
        }
        other => other.into(),
    }
}

/// What Keras prints when early stopping ends a run: the epoch it stopped at, and the epoch
/// whose weights were restored.
fn early_stop_note<M>(trainer: &TrainerConfig, fit: &FitResult<M>) -> String {
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

/// For series: the test forecasts' errors in the series' units, beside the naive baselines'.
fn forecast<M: kiln::common::Model>(
    model: &M,
    prepared: &Prepared,
    device: &Device,
) -> Option<ForecastReport> {
    let windows = prepared.forecast.as_ref()?;
    let outputs = kiln::train::predict(model, &prepared.test, EVAL_BATCH, device);
    Some(windows.report(&outputs))
}

/// Loads a run's weights into `fresh` (same architecture) and evaluates it on the test set.
fn reload_and_evaluate<M: kiln::common::Model>(
    run: &RunDir,
    fresh: M,
    data: &Prepared,
    device: &Device,
) -> Result<(Metrics, Option<ForecastReport>)> {
    let model = run.load_model(fresh)?;
    Ok((
        evaluate(&model, &data.test, data.task, EVAL_BATCH, device),
        forecast(&model, data, device),
    ))
}

pub fn predict(args: &PredictArgs) -> Result<()> {
    let run = open_finished(&args.run)?;
    let config: RunConfig = run.read_json("config.json")?;
    let (_, device) = backend::device(args.device.as_deref())?;
    let scaler: Option<Scaler> = if run.file("scaler.json").exists() {
        Some(run.read_json("scaler.json")?)
    } else {
        None
    };
    let inputs = match &scaler {
        Some(Scaler::Text(encoder)) => {
            let column = config
                .data
                .sequence
                .text_column
                .as_deref()
                .unwrap_or("text");
            encoder.encode_texts(&kiln::datasets::load_texts_csv(&args.input, column)?)
        }
        Some(Scaler::Series(_)) => bail!(
            "predict takes new rows of features, images or texts; a series run reports its \
             forecasts with `kiln eval --run {}`",
            args.run.display()
        ),
        other => {
            let mut inputs = if config.data.is_images() {
                kiln::datasets::digit_recognizer_test(&args.input)?
            } else {
                kiln::datasets::load_features_csv(&args.input)?
            };
            if let Some(scaler) = other {
                scaler.transform(&mut inputs)?;
            }
            inputs
        }
    };
    let rows = match &config.model {
        ModelSpec::Mlp(mlp) => {
            check_inputs(&inputs, &[mlp.d_input], &args.input)?;
            let model: Mlp = run.load_model(mlp.init(&device))?;
            kiln::train::predict(&model, &inputs, EVAL_BATCH, &device)
        }
        ModelSpec::Cnn(cnn) => {
            let shape = [cnn.in_channels, cnn.image_size[0], cnn.image_size[1]];
            check_inputs(&inputs, &shape, &args.input)?;
            let model: Cnn = run.load_model(cnn.init(&device))?;
            kiln::train::predict(&model, &inputs, EVAL_BATCH, &device)
        }
        ModelSpec::Sequence(seq) => {
            let model: SequenceModel = run.load_model(seq.init(&device))?;
            let mut inputs = inputs;
            inputs.sample_shape = vec![inputs.sample_len() / seq.d_input.max(1), seq.d_input];
            kiln::train::predict(&model, &inputs, EVAL_BATCH, &device)
        }
        ModelSpec::Transformer(t) => match t.input {
            TransformerInput::Tokens { .. } => {
                let model = run.load_model(t.tokens(&device))?;
                kiln::train::predict(&model, &inputs, EVAL_BATCH, &device)
            }
            TransformerInput::Features { d_input } => {
                let model = run.load_model(t.features(&device))?;
                let mut inputs = inputs;
                inputs.sample_shape = vec![inputs.sample_len() / d_input.max(1), d_input];
                kiln::train::predict(&model, &inputs, EVAL_BATCH, &device)
            }
        },
        ModelSpec::Perceptron(_) => bail!("predict supports the MLP, CNN and sequence models"),
    };
    let classes: Vec<String> = run.read_json::<serde_json::Value>("metrics.json")?["per_class"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["class"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let labels: Vec<String> = match config.trainer.task {
        Task::Classification => rows
            .iter()
            .map(|r| {
                let best = if r.len() == 1 {
                    usize::from(r[0] > 0.0)
                } else {
                    (0..r.len())
                        .max_by(|&a, &b| r[a].total_cmp(&r[b]))
                        .unwrap_or(0)
                };
                classes
                    .get(best)
                    .cloned()
                    .unwrap_or_else(|| best.to_string())
            })
            .collect(),
        Task::Regression => rows.iter().map(|r| r[0].to_string()).collect(),
    };
    kiln::datasets::write_submission(&args.output, &labels)?;
    err_line(&format!(
        "kiln: {} predictions written to {}",
        labels.len(),
        args.output.display()
    ))?;
    Ok(())
}

fn check_inputs(inputs: &Data, expected: &[usize], path: &std::path::Path) -> Result<()> {
    let flat = |s: &[usize]| s.iter().product::<usize>();
    if flat(&inputs.sample_shape) != flat(expected) {
        bail!(
            "{}: the model takes samples of shape {expected:?}, the file has {:?}",
            path.display(),
            inputs.sample_shape
        );
    }
    Ok(())
}

fn trainer_config(args: &TrainArgs, task: Task) -> TrainerConfig {
    TrainerConfig {
        task,
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr.unwrap_or(1e-3),
        optimizer: OptimizerConfig {
            kind: args.optimizer,
            momentum: args.momentum,
            nesterov: args.nesterov,
            weight_decay: args.weight_decay,
            clip: args
                .clip_value
                .map(GradientClip::Value)
                .or(args.clip_norm.map(GradientClip::Norm)),
        },
        lr_schedule: args.lr_schedule,
        augmentation: args.augment.clone().map(|a| Augmentation {
            seed: args.seed,
            ..a
        }),
        validation_split: args.validation_split,
        early_stopping: (args.patience > 0).then_some(EarlyStopping {
            monitor: args.monitor,
            min_delta: args.min_delta,
            patience: args.patience,
            restore_best_weights: args.restore_best,
        }),
        seed: args.seed,
        devices: Vec::new(),
        verbosity: if args.quiet {
            Verbosity::Quiet
        } else {
            Verbosity::auto()
        },
    }
}

fn model_spec(args: &TrainArgs, data: &Prepared) -> Result<ModelSpec> {
    let d_input = data.train.sample_len();
    let d_output = data.train.y.width();
    Ok(match args.model {
        ModelKind::Mlp => {
            let config = MlpConfig::new(d_input, args.hidden.clone(), d_output)
                .with_activation(args.activation)
                .with_dropout(args.dropout)
                .with_batch_norm(args.batch_norm);
            config.check()?;
            ModelSpec::Mlp(config)
        }
        ModelKind::Cnn => {
            let config = CnnConfig::preset(args.preset, d_output);
            let expected = [
                config.in_channels,
                config.image_size[0],
                config.image_size[1],
            ];
            if data.task != Task::Classification || data.train.sample_shape != expected {
                bail!(
                    "the {} preset classifies {}x{}x{} images; {} has samples of shape {:?} ({})",
                    args.preset,
                    expected[0],
                    expected[1],
                    expected[2],
                    args.dataset,
                    data.train.sample_shape,
                    data.task
                );
            }
            config.check()?;
            ModelSpec::Cnn(config)
        }
        ModelKind::Lstm | ModelKind::Gru => {
            let [_, d_input] = data.train.sample_shape[..] else {
                bail!(
                    "a sequence model reads samples of shape [steps, features]; {} has {:?} \
                     (try --dataset sequential-mnist)",
                    args.dataset,
                    data.train.sample_shape
                );
            };
            let d_hidden = args.hidden.first().copied().unwrap_or(128);
            let cell = if args.model == ModelKind::Lstm {
                Cell::Lstm
            } else {
                Cell::Gru
            };
            let pooling = match args.pooling.as_deref() {
                None | Some("last") => Pooling::Last,
                Some("mean") => Pooling::Mean,
                Some(other) => bail!(
                    "--pooling {other} is for the transformer; lstm and gru pool by last or mean"
                ),
            };
            let config = SequenceModelConfig::new(d_input, d_hidden, d_output)
                .with_cell(cell)
                .with_layers(args.layers)
                .with_bidirectional(args.bidirectional)
                .with_dropout(if args.layers > 1 { args.dropout } else { 0.0 })
                .with_pooling(pooling);
            config.check()?;
            ModelSpec::Sequence(config)
        }
        ModelKind::Transformer => {
            let pooling = match args.pooling.as_deref() {
                None | Some("mean") => kiln::transformer::Pooling::Mean,
                Some("cls") => kiln::transformer::Pooling::Cls,
                Some(other) => bail!(
                    "--pooling {other} is for lstm and gru; the transformer pools by mean or cls"
                ),
            };
            let (input, seq_len) = match (&data.scaler, &data.train.sample_shape[..]) {
                (Some(Scaler::Text(encoder)), _) => (
                    TransformerInput::Tokens {
                        vocab_size: encoder.vocab_size(),
                    },
                    encoder.seq_len,
                ),
                (_, &[steps, d_input]) => (TransformerInput::Features { d_input }, steps),
                (_, shape) => bail!(
                    "the transformer reads texts (spam, text-csv:) or samples of shape [steps, \
                     features] (sequential-mnist, airline); {} has {shape:?}",
                    args.dataset
                ),
            };
            let config = SequenceClassifierConfig::new(args.d_model, d_output)
                .with_n_heads(args.heads)
                .with_d_ff(args.d_ff)
                .with_n_blocks(args.layers)
                .with_dropout(args.dropout)
                .with_activation(args.activation)
                .with_max_len(seq_len)
                .with_positions(if args.positions == "learned" {
                    Positions::Learned
                } else {
                    Positions::Sinusoidal
                })
                .with_pooling(pooling);
            config.check()?;
            ModelSpec::Transformer(TransformerSpec { config, input })
        }
        ModelKind::Perceptron => {
            if data.task != Task::Classification || d_output != 2 {
                bail!(
                    "the perceptron separates two classes; {} has {} {}",
                    args.dataset,
                    d_output,
                    if data.task == Task::Classification {
                        "classes"
                    } else {
                        "regression targets"
                    }
                );
            }
            ModelSpec::Perceptron(
                PerceptronConfig::new(d_input).with_learning_rate(args.lr.unwrap_or(1.0)),
            )
        }
    })
}

fn model_name(model: &ModelSpec) -> String {
    match model {
        ModelSpec::Mlp(c) => format!(
            "MLP {}",
            std::iter::once(c.d_input)
                .chain(c.hidden.iter().copied())
                .chain([c.d_output])
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("-")
        ),
        ModelSpec::Cnn(c) => format!(
            "CNN ({} conv blocks, {}x{}x{} images, {} classes)",
            c.blocks.len(),
            c.in_channels,
            c.image_size[0],
            c.image_size[1],
            c.d_output
        ),
        ModelSpec::Sequence(c) => format!(
            "{:?} {}x{}{} ({} features per step, {} outputs)",
            c.cell,
            c.layers,
            c.d_hidden,
            if c.bidirectional {
                " bidirectional"
            } else {
                ""
            },
            c.d_input,
            c.d_output
        ),
        ModelSpec::Transformer(t) => format!(
            "Transformer encoder {}x{} ({} heads, d_ff {}, {})",
            t.config.n_blocks,
            t.config.d_model,
            t.config.n_heads,
            t.config.d_ff,
            match t.input {
                TransformerInput::Tokens { vocab_size } => format!("vocabulary {vocab_size}"),
                TransformerInput::Features { d_input } => format!("{d_input} features per step"),
            }
        ),
        ModelSpec::Perceptron(c) => format!("perceptron ({} inputs)", c.d_input),
    }
}

fn default_run_dir(args: &TrainArgs, data: &DataConfig) -> PathBuf {
    let model = match args.model {
        ModelKind::Mlp => "mlp",
        ModelKind::Perceptron => "perceptron",
        ModelKind::Cnn => "cnn",
        ModelKind::Lstm => "lstm",
        ModelKind::Gru => "gru",
        ModelKind::Transformer => "transformer",
    };
    let base = PathBuf::from("runs").join(format!("{model}-{}-{}", data.short_name(), timestamp()));
    // Two runs started in the same second: the second is `-2`, as Lightning numbers versions.
    (1..)
        .map(|n| match n {
            1 => base.clone(),
            n => PathBuf::from(format!("{}-{n}", base.display())),
        })
        .find(|dir| !dir.exists())
        .expect("a free name")
}

/// UTC time as `YYYYMMDD-HHMMSS`.
fn timestamp() -> String {
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

/// What a run reports in `metrics.json`.
struct Report {
    test: Metrics,
    best_epoch: usize,
    epochs_run: usize,
    stopped_early: bool,
    train_seconds: f64,
    samples_per_sec: f64,
    n_params: usize,
    forecast: Option<ForecastReport>,
}

impl Report {
    fn from_fit<M>(
        fit: &FitResult<M>,
        test: Metrics,
        forecast: Option<ForecastReport>,
        n_params: usize,
    ) -> Self {
        Self {
            forecast,
            test,
            best_epoch: fit.best_epoch,
            epochs_run: fit.epochs_run,
            stopped_early: fit.stopped_early,
            train_seconds: fit.train_seconds,
            samples_per_sec: fit.samples_per_sec,
            n_params,
        }
    }

    fn metrics_json(
        &self,
        backend: Backend,
        devices: usize,
        model: &ModelSpec,
    ) -> serde_json::Value {
        let mut m = json!({
            "task": self.test.task,
            "backend": backend.name(),
            "devices": devices,
            "model": model_name(model),
            "n_params": self.n_params,
            "test_loss": self.test.loss,
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early,
            "train_seconds": self.train_seconds,
            "samples_per_sec": self.samples_per_sec,
        });
        let obj = m.as_object_mut().expect("an object");
        for (key, value) in [
            ("test_accuracy", self.test.accuracy),
            ("test_mse", self.test.mse),
            ("test_mae", self.test.mae),
            ("test_r2", self.test.r2),
        ] {
            if let Some(v) = value {
                obj.insert(key.into(), json!(v));
            }
        }
        if let Some(r) = &self.test.classes {
            let per_class: Vec<serde_json::Value> = (0..r.names.len())
                .map(|c| {
                    json!({
                        "class": r.names[c],
                        "precision": r.precision[c],
                        "recall": r.recall[c],
                        "f1": r.f1[c],
                        "support": r.confusion[c].iter().sum::<usize>(),
                    })
                })
                .collect();
            obj.insert("per_class".into(), json!(per_class));
            obj.insert("macro_precision".into(), json!(r.macro_precision));
            obj.insert("macro_recall".into(), json!(r.macro_recall));
            obj.insert("macro_f1".into(), json!(r.macro_f1));
            obj.insert("confusion_matrix".into(), json!(r.confusion));
        }
        if let Some(f) = &self.forecast {
            for (key, value) in forecast_metrics(f) {
                obj.insert(key.into(), json!(value));
            }
        }
        m
    }
}

/// Forecast errors in the series' units: `test_rmse`, `test_mae` and the naive baselines'.
fn forecast_metrics(f: &ForecastReport) -> Vec<(&'static str, f64)> {
    let mut out = vec![
        ("test_rmse", f.model.rmse),
        ("test_mae", f.model.mae),
        ("naive_last_rmse", f.naive_last.rmse),
        ("naive_last_mae", f.naive_last.mae),
    ];
    if let Some(s) = f.naive_seasonal {
        out.push(("naive_seasonal_rmse", s.rmse));
        out.push(("naive_seasonal_mae", s.mae));
    }
    if let Some(season) = f.season {
        out.push(("season_length", season as f64));
    }
    out
}

fn print_metrics(m: &Metrics, forecast: Option<&ForecastReport>) -> Result<()> {
    use std::fmt::Write;
    let mut text = format!("test_loss: {:.4}\n", m.loss);
    for (name, value) in [
        ("test_accuracy", m.accuracy),
        ("test_mse", m.mse),
        ("test_mae", m.mae),
        ("test_r2", m.r2),
    ] {
        if let Some(v) = value {
            writeln!(text, "{name}: {v:.4}")?;
        }
    }
    if let Some(report) = &m.classes {
        writeln!(text, "test_macro_f1: {:.4}", report.macro_f1)?;
        write!(text, "{report}")?;
    }
    if let Some(f) = forecast {
        // In the series' units; test_mae above is on the scaled differences the model outputs.
        for (name, value) in forecast_metrics(f) {
            writeln!(text, "forecast {name}: {value:.4}")?;
        }
    }
    out(&text)
}

/// Writes `text` to standard output; a closed output (`kiln ... | head`) is an
/// [`std::io::ErrorKind::BrokenPipe`] error, which `main` ends on quietly.
pub fn out(text: &str) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// Writes a line to standard error, as [`out`] does to standard output.
pub fn err_line(text: &str) -> Result<()> {
    use std::io::Write;
    writeln!(std::io::stderr(), "{text}")?;
    Ok(())
}

fn classification_only(accuracy: f64) -> Metrics {
    Metrics {
        task: Task::Classification,
        loss: 1.0 - accuracy,
        accuracy: Some(accuracy),
        mse: None,
        mae: None,
        r2: None,
        classes: None,
    }
}

fn tensors(data: &Data, device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let n = data.len();
    let x = Tensor::from_data(
        TensorData::new(data.x.clone(), [n, data.sample_len()]),
        device,
    );
    let labels: Vec<i64> = match &data.y {
        Targets::Classes { labels, .. } => labels.iter().map(|&l| l as i64).collect(),
        Targets::Values { .. } | Targets::Unlabelled { .. } => {
            unreachable!("the perceptron is only built for labelled classes")
        }
    };
    (x, Tensor::from_data(TensorData::new(labels, [n]), device))
}

fn perceptron_accuracy(model: &kiln::fnn::Perceptron, data: &Data, device: &Device) -> f64 {
    let (x, t) = tensors(data, device);
    let correct = model
        .forward(x)
        .int()
        .equal(t)
        .int()
        .sum()
        .into_scalar::<i64>();
    correct as f64 / data.len().max(1) as f64
}

/// Trains the perceptron with its own rule (the trainer's gradient machinery does not apply to
/// a step function) and records the run like any other. Its "loss" is the error rate.
fn perceptron(
    cfg: &PerceptronConfig,
    data: &Prepared,
    epochs: usize,
    device: &Device,
    run: &RunDir,
) -> Result<Report> {
    let mut model = cfg.init(device);
    let (x, t) = tensors(&data.train, device);
    let start = std::time::Instant::now();
    let fit = model.fit(x, t, epochs);
    let train_seconds = start.elapsed().as_secs_f64();
    let n = data.train.len() as f64;
    let history = History {
        epochs: fit
            .errors_per_epoch
            .iter()
            .enumerate()
            .map(|(i, &errors)| kiln::train::EpochRecord {
                epoch: i + 1,
                train_loss: errors as f64 / n,
                train_accuracy: Some(1.0 - errors as f64 / n),
                val_loss: f64::NAN,
                val_accuracy: None,
                lr: cfg.learning_rate,
                seconds: train_seconds / fit.epochs.max(1) as f64,
                train_seconds: Some(train_seconds / fit.epochs.max(1) as f64),
                metrics: Default::default(),
            })
            .collect(),
    };
    run.write_text("history.csv", &history.to_csv())?;
    let accuracy = perceptron_accuracy(&model, &data.test, device);
    let n_params = model.num_params();
    run.save_model(model).context("saving the perceptron")?;
    Ok(Report {
        test: classification_only(accuracy),
        best_epoch: fit.epochs,
        epochs_run: fit.epochs,
        stopped_early: fit.converged,
        train_seconds,
        samples_per_sec: n * fit.epochs as f64 / train_seconds.max(1e-9),
        n_params,
        forecast: None,
    })
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
