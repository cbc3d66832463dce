//! `kiln distill`: a student trained from a teacher run's outputs beside the labels.

use std::path::Path;

use anyhow::{Context, Result, bail};
use kiln::Device;
use kiln::train::{Distillation, Trainer};

use crate::args::DistillArgs;

use super::evaluate::open_finished;
use super::spec::{ModelSpec, RunConfig};
use super::train::{as_flag, new_config, train_new};

pub fn distill(args: &DistillArgs) -> Result<()> {
    // Joined first, so that every message of a rank of an MPI job says which it is.
    super::job::Job::current()?;
    let student = &args.train;
    if student.resume.is_some() {
        bail!("a distilled run resumes as any run does: kiln train --resume DIR");
    }
    if student.config.is_some() || student.auto_fix {
        bail!("kiln distill takes the student's flags, not --config or --auto-fix");
    }
    let (mut config, prepared) = new_config(student)?;
    config.trainer.distillation = Some(Distillation {
        temperature: args.temperature,
        alpha: args.alpha,
    });
    config.trainer.check().map_err(as_flag)?;
    check_teacher(&args.teacher, &config)?;
    config.teacher = Some(
        std::fs::canonicalize(&args.teacher)
            .with_context(|| format!("--teacher {}", args.teacher.display()))?,
    );
    train_new(student, &config, &prepared)
}

/// The teacher is a finished run on the student's data: the same set, classes, test split and
/// preparation (how many labelled samples each trained on may differ). Another test split would
/// let the teacher's training samples into the student's test set; a dataset with its own test
/// set (MNIST) has the same one whatever the seed, so there the seeds may differ.
fn check_teacher(dir: &Path, student: &RunConfig) -> Result<()> {
    let run = open_finished(dir).with_context(|| format!("--teacher {}", dir.display()))?;
    let teacher: RunConfig = run.read_json("config.json")?;
    if matches!(teacher.model, ModelSpec::Perceptron(_)) {
        bail!(
            "--teacher {}: a perceptron has no class probabilities to teach with",
            dir.display()
        );
    }
    let comparable = |config: &RunConfig| {
        let mut data = config.data.clone();
        data.labels.per_class = None;
        data.labels.samples = None;
        // Caching decoded images changes no value.
        data.images.cache = None;
        if data.official_test() {
            data.seed = 0;
            data.test_split = 0.0;
        }
        serde_json::to_value(data).expect("a data config serialises")
    };
    let (theirs, ours) = (comparable(&teacher), comparable(student));
    if theirs != ours {
        let differs: Vec<String> = ours
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(key, value)| theirs.get(key.as_str()) != Some(*value))
            .map(|(key, value)| format!("{key}: teacher {}, student {value}", theirs[key]))
            .collect();
        bail!(
            "--teacher {}: trained on other data than the student's ({}); distil on the \
             teacher's dataset, classes, split seed and preparation",
            dir.display(),
            differs.join("; ")
        );
    }
    Ok(())
}

/// `trainer` distilling from the model of the finished run in `dir`, loaded on `device`.
pub(super) fn with_teacher(trainer: Trainer, dir: &Path, device: &Device) -> Result<Trainer> {
    let run = open_finished(dir).with_context(|| format!("the teacher {}", dir.display()))?;
    let config: RunConfig = run.read_json("config.json")?;
    let trainer = with_model!(
        &config.model,
        device,
        |fresh| trainer.with_teacher(run.load_model(fresh)?),
        perceptron | _cfg | bail!("the teacher {} is a perceptron", dir.display())
    );
    Ok(trainer)
}
