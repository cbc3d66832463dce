//! The commands around runs: `kiln summary`, `lr-find`, `plot`, `export` and `import`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use kiln::backend;
use kiln::burn::module::Module;
use kiln::train::{
    History, LrFinder, PlotRun, RunDir, check_memory, export_safetensors, freeze,
    import_safetensors, plot_histories, weight_bytes,
};

use crate::args::{ExportArgs, ImportArgs, LrFindArgs, PlotArgs, TrainArgs};
use crate::dataset::Prepared;

use super::out;
use super::perceptron::perceptron_summary;
use super::spec::{RunConfig, data_config, model_spec, trainer_config};
use super::train::{as_flag, flags_outside, timestamp};

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
pub(super) fn run_name(run: &RunDir) -> String {
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
/// The table allocates the weights: a model whose weights exceed this machine's memory is an
/// error with its size instead.
pub(super) fn summary_of<M: kiln::common::Model>(model: &M, data: &Prepared) -> Result<String> {
    let n = Module::num_params(model);
    check_memory(n, weight_bytes(n), "its weights need", None)?;
    Ok(kiln::common::summary(model, &data.train.sample_shape).to_string())
}

/// `kiln summary` and `kiln lr-find` take `kiln train`'s model and data flags; those that only
/// a training run uses are refused rather than ignored.
pub(super) fn refuse_training_flags(command: &str, args: &TrainArgs) -> Result<()> {
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

/// `kiln summary`: the model `kiln train` would build with these flags, or that a run's
/// `config.json` describes (`--config`: also a pre-training, LoRA or distilled run), as a table.
pub fn summary(args: &TrainArgs) -> Result<()> {
    refuse_training_flags("summary", args)?;
    let (_, device) = backend::device(args.device.as_deref())?;
    let (model, prepared, freezing, lora) = match &args.config {
        Some(path) => {
            let conflicting = flags_outside(&args.given, &["config", "device"]);
            if !conflicting.is_empty() {
                bail!(
                    "--config {} describes the model; these flags conflict with it: {}",
                    path.display(),
                    conflicting.join(", ")
                );
            }
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--config: reading {}", path.display()))?;
            let config: RunConfig = serde_json::from_str(&text).with_context(|| {
                format!("--config {}: not a kiln run's config.json", path.display())
            })?;
            let prepared = config
                .data
                .prepare(Some(config.trainer.task), config.trainer.validation_split)?;
            (
                config.model,
                prepared,
                config.trainer.freeze,
                config.trainer.lora,
            )
        }
        None => {
            let prepared = data_config(args).prepare(args.task, args.validation_split)?;
            let model = model_spec(args, &prepared)?;
            (model, prepared, args.freeze.clone(), args.lora.clone())
        }
    };
    device.seed(args.seed);
    let text = with_model!(
        &model,
        &device,
        |m| {
            let m = freeze(m, &freezing).map_err(as_flag)?;
            match &lora {
                Some(lora) => summary_of(&lora.apply(m).map_err(as_flag)?, &prepared)?,
                None => summary_of(&m, &prepared)?,
            }
        },
        perceptron | cfg | perceptron_summary(cfg, &device)
    );
    out(&text)
}
