//! Findings about a run from its history, in the learner's words: a loss that diverged, a
//! learning rate too high or too low, overfitting, a model no better than ignoring its inputs.
//! Each rule's threshold is a named constant here and in the README; a finding says what was
//! seen (the statistic, its value, the threshold, the epoch), what it means, and the kiln flag
//! to try. The rules read only the history and the data's trivial baseline, so the same
//! history gives the same findings, and a finished run can be diagnosed again from its
//! `history.csv` (`kiln diagnose`).

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use kiln_datasets::{Data, Targets};
use serde::{Deserialize, Serialize};

use crate::{Callback, GradientProbe, History, ParamStats, UnitStats, Verbosity};

/// The columns of `diagnostics.csv`: one row per epoch, parameter tensor and statistic.
pub const GRADIENTS_CSV_HEADER: &str = "epoch,parameter,statistic,value";

/// The statistics of a [`ParamStats`], by the names `diagnostics.csv` gives them.
const STATISTICS: [&str; 7] = [
    "size",
    "grad_norm",
    "grad_mean_abs",
    "zero_grad_share",
    "weight_norm",
    "weight_var",
    "update_ratio",
];

/// Writes the epochs' statistics as `diagnostics.csv` (values that read back exactly).
pub fn gradients_to_csv(gradients: &[EpochGradients]) -> String {
    let mut out = format!("{GRADIENTS_CSV_HEADER}\n");
    for epoch in gradients {
        for p in &epoch.params {
            let values = [
                Some(p.size as f64),
                Some(p.grad_norm),
                Some(p.grad_mean_abs),
                Some(p.zero_grad_share),
                Some(p.weight_norm),
                Some(p.weight_var),
                p.update_ratio,
            ];
            for (statistic, value) in STATISTICS.iter().zip(values) {
                if let Some(v) = value {
                    out.push_str(&format!("{},{},{statistic},{v:?}\n", epoch.epoch, p.name));
                }
            }
        }
        for u in &epoch.units {
            let values = [
                ("units", Some(u.units as f64)),
                ("dead_share", u.dead_share),
                ("saturated_share", u.saturated_share),
            ];
            for (statistic, value) in values {
                if let Some(v) = value {
                    out.push_str(&format!("{},{},{statistic},{v:?}\n", epoch.epoch, u.layer));
                }
            }
        }
    }
    out
}

/// Reads back what [`gradients_to_csv`] wrote; a malformed row is an error naming it.
pub fn gradients_from_csv(text: &str) -> Result<Vec<EpochGradients>, String> {
    let mut lines = text.lines();
    match lines.next() {
        Some(h) if h.trim() == GRADIENTS_CSV_HEADER => {}
        other => {
            return Err(format!(
                "header is {:?}, expected {GRADIENTS_CSV_HEADER:?}",
                other.unwrap_or("")
            ));
        }
    }
    let mut out: Vec<EpochGradients> = Vec::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let row = i + 1;
        let cells: Vec<&str> = line.split(',').collect();
        let [epoch, name, statistic, value] = cells[..] else {
            return Err(format!("row {row}: expected 4 fields, got {}", cells.len()));
        };
        let epoch: usize = epoch
            .parse()
            .map_err(|_| format!("row {row}, column epoch: `{epoch}` is not an epoch"))?;
        let value: f64 = value
            .parse()
            .map_err(|_| format!("row {row}, column value: `{value}` is not a number"))?;
        if out.last().is_none_or(|e| e.epoch != epoch) {
            out.push(EpochGradients {
                epoch,
                params: Vec::new(),
                units: Vec::new(),
            });
        }
        if let "units" | "dead_share" | "saturated_share" = statistic {
            let units = &mut out.last_mut().expect("pushed").units;
            if units.last().is_none_or(|u| u.layer != name) {
                units.push(UnitStats {
                    layer: name.to_string(),
                    units: 0,
                    dead_share: None,
                    saturated_share: None,
                });
            }
            let u = units.last_mut().expect("pushed");
            match statistic {
                "units" => u.units = value as usize,
                "dead_share" => u.dead_share = Some(value),
                _ => u.saturated_share = Some(value),
            }
            continue;
        }
        let params = &mut out.last_mut().expect("pushed").params;
        if params.last().is_none_or(|p| p.name != name) {
            params.push(ParamStats {
                name: name.to_string(),
                size: 0,
                grad_norm: 0.0,
                grad_mean_abs: 0.0,
                zero_grad_share: 0.0,
                weight_norm: 0.0,
                weight_var: 0.0,
                update_ratio: None,
            });
        }
        let p = params.last_mut().expect("pushed");
        match statistic {
            "size" => p.size = value as usize,
            "grad_norm" => p.grad_norm = value,
            "grad_mean_abs" => p.grad_mean_abs = value,
            "zero_grad_share" => p.zero_grad_share = value,
            "weight_norm" => p.weight_norm = value,
            "weight_var" => p.weight_var = value,
            "update_ratio" => p.update_ratio = Some(value),
            other => return Err(format!("row {row}, column statistic: unknown `{other}`")),
        }
    }
    Ok(out)
}

/// One epoch's gradient, weight and update statistics, per parameter tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochGradients {
    /// The epoch (from 1).
    pub epoch: usize,
    /// Every parameter tensor's statistics, in the model's order.
    pub params: Vec<ParamStats>,
    /// Every activation layer's units on the probe batch, in the model's order.
    #[serde(default)]
    pub units: Vec<UnitStats>,
}

/// What kind of problem a [`Finding`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// The loss grew far beyond where it started or beyond the trivial baseline, though it
    /// stayed finite.
    Diverged,
    /// The loss rises or oscillates while the model is still poor.
    LrTooHigh,
    /// The loss barely moves while the model is still poor.
    LrTooLow,
    /// The validation loss rose far above its best while the training loss kept falling.
    Overfitting,
    /// At the end, the model is no better than one that ignores its inputs.
    Underfitting,
    /// The inputs are far from unit scale.
    UnscaledInputs,
    /// The first layers' gradients are a vanishing fraction of the last layer's.
    VanishingGradients,
    /// An optimiser step changes a weight tensor by as much as its own size.
    ExplodingGradients,
    /// Most of a ReLU layer's units never activate on the probe batch.
    DeadUnits,
    /// Most of a sigmoid or tanh layer's units sit in their flat tails on the probe batch.
    SaturatedUnits,
}

/// One problem seen in a run, as `diagnosis.json` keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The problem.
    pub kind: FindingKind,
    /// The epoch it was first seen at (from 1).
    pub epoch: usize,
    /// The layer it is about; `None` for the whole run.
    pub layer: Option<String>,
    /// What was measured.
    pub statistic: String,
    /// Its value.
    pub value: f64,
    /// The rule's threshold.
    pub threshold: f64,
    /// What it means, in one sentence.
    pub message: String,
    /// The kiln change to try.
    pub advice: String,
}

/// A run's findings (problems only: a healthy run's list is empty) and notes (what is merely
/// worth knowing): `diagnosis.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// The problems, in the order first seen.
    pub findings: Vec<Finding>,
    /// What is worth knowing but no problem.
    pub notes: Vec<String>,
}

/// A loss this many times the trivial baseline's (or the first epoch's) has diverged.
pub const DIVERGED_FACTOR: f64 = 10.0;
/// A model whose training loss is at least this share of the baseline's has learned little.
pub const STILL_POOR: f64 = 0.8;
/// Learning rate too high: in the last [`WINDOW`] epochs, at least half of the epoch-to-epoch
/// changes of a still-poor training loss are rises of more than this fraction...
pub const RISE: f64 = 0.05;
/// ... or the loss stands this far above its lowest so far.
pub const ABOVE_LOWEST: f64 = 1.2;
/// Learning rate too low: a still-poor training loss that fell less than this fraction per
/// epoch on average, over at least [`WINDOW`] epochs.
pub const STALLED: f64 = 0.01;
/// The epochs the learning-rate rules look back over.
pub const WINDOW: usize = 5;
/// Overfitting: the validation loss at this many times its lowest while the training loss
/// stands below its value at that epoch. A smaller rise (above [`OVERFIT_NOTE`]) is a note.
pub const OVERFIT: f64 = 1.5;
/// Overfitting, the gap: the validation loss at least this many times the training loss...
pub const GAP_RATIO: f64 = 3.0;
/// ... and above it by at least this share of the baseline loss, [`SUSTAINED`] epochs running.
pub const GAP: f64 = 0.1;
/// A validation rise worth a note.
pub const OVERFIT_NOTE: f64 = 1.1;
/// The epochs in a row a validation rise must last to count.
pub const SUSTAINED: usize = 3;
/// Underfitting: the best validation loss at least this share of the baseline's.
pub const UNDERFIT: f64 = 0.9;
/// Unscaled inputs: a feature whose mean or standard deviation is larger than this.
pub const UNSCALED: f64 = 10.0;

/// Vanishing gradients: the first weight tensor's mean |gradient| below this fraction of the
/// last one's (a sigmoid's derivative is at most 1/4, so ten sigmoid layers scale the
/// gradient by 1e-6 or less on its way back).
pub const VANISHING: f64 = 1e-3;
/// Exploding gradients: one optimiser step changing a weight tensor by this much of its own
/// norm (healthy steps change weights by about 1e-3 of it).
pub const EXPLODING: f64 = 1.0;
/// Dead units: this share of a ReLU layer's units inactive on every sample of the probe batch
/// ([`UnitStats::dead_share`]).
pub const DEAD: f64 = 0.5;
/// Saturated units: this share of a sigmoid or tanh layer's units in their flat tails on the
/// probe batch ([`UnitStats::saturated_share`]).
pub const SATURATED: f64 = 0.5;

/// The weight tensors the gradient rules judge: matrices and kernels, not biases,
/// normalisation scales or embeddings (whose rows only get a gradient for the tokens in the
/// batch).
fn judged(p: &ParamStats) -> bool {
    p.name.contains("weight")
        && !p.name.contains("embedding")
        && !p.name.contains("norm")
        && p.size > 1
}

/// The module a parameter tensor belongs to: its path without the last part.
fn layer_of(name: &str) -> String {
    name.rsplit_once('.')
        .map_or(name, |(layer, _)| layer)
        .to_string()
}

/// The findings the gradient statistics show, each kind once, at the first epoch it shows.
fn gradient_findings(gradients: &[EpochGradients], diagnosis: &mut Diagnosis) {
    let mut seen = BTreeSet::new();
    for epoch in gradients {
        let weights: Vec<&ParamStats> = epoch.params.iter().filter(|p| judged(p)).collect();
        let mut push = |kind,
                        layer: String,
                        statistic: String,
                        value,
                        threshold,
                        message: &str,
                        advice: &str| {
            if seen.insert(kind) {
                diagnosis.findings.push(Finding {
                    kind,
                    epoch: epoch.epoch,
                    layer: Some(layer),
                    statistic,
                    value,
                    threshold,
                    message: message.into(),
                    advice: advice.into(),
                });
            }
        };
        if let (Some(first), Some(last)) = (weights.first(), weights.last())
            && weights.len() >= 3
            && last.grad_mean_abs > 0.0
            && first.grad_mean_abs / last.grad_mean_abs < VANISHING
        {
            push(
                FindingKind::VanishingGradients,
                layer_of(&first.name),
                format!("mean |gradient| of {} / of {}", first.name, last.name),
                first.grad_mean_abs / last.grad_mean_abs,
                VANISHING,
                "the gradient shrinks on its way back through the layers, so the first layers \
                 barely learn (saturating activations such as sigmoid and tanh multiply it by \
                 at most 1/4 or 1 per layer)",
                "--activation relu (or leaky-relu), --batch-norm, or fewer layers",
            );
        }
        if let Some(p) = weights
            .iter()
            .find(|p| p.update_ratio.is_some_and(|r| r >= EXPLODING))
        {
            push(
                FindingKind::ExplodingGradients,
                layer_of(&p.name),
                format!("update ratio ||dW|| / ||W|| of {}", p.name),
                p.update_ratio.unwrap_or_default(),
                EXPLODING,
                "one step changes the weights by as much as their own size: the gradient (or \
                 the learning rate) is so large that each step throws the weights away",
                "--clip-norm 1 to cap each step, and a lower --lr",
            );
        }
        if let Some(u) = epoch
            .units
            .iter()
            .find(|u| u.dead_share.is_some_and(|d| d >= DEAD))
        {
            push(
                FindingKind::DeadUnits,
                u.layer.clone(),
                format!(
                    "share of the layer's {} units inactive on all {} probe samples",
                    u.units,
                    crate::diagnosis::gradients::PROBE_SAMPLES
                ),
                u.dead_share.unwrap_or_default(),
                DEAD,
                "most of the layer's units never activate (a ReLU whose input stays negative \
                 outputs 0 and passes no gradient), so they have stopped learning for good",
                "--activation leaky-relu (or elu), a lower --lr, or --batch-norm",
            );
        }
        if let Some(u) = epoch
            .units
            .iter()
            .find(|u| u.saturated_share.is_some_and(|d| d >= SATURATED))
        {
            push(
                FindingKind::SaturatedUnits,
                u.layer.clone(),
                format!(
                    "share of the layer's {} units in their flat tails on the probe samples",
                    u.units
                ),
                u.saturated_share.unwrap_or_default(),
                SATURATED,
                "most of the layer's sigmoid or tanh units are pinned near their limits, where \
                 the slope is almost 0: they pass almost no gradient and barely learn",
                "scale the inputs (--normalize), --batch-norm, a lower --lr, or --activation relu",
            );
        }
    }
}

/// What the rules need to know of the training data: the loss of a model that ignores its
/// inputs, and how far the inputs are from unit scale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DataProfile {
    /// Cross-entropy of always predicting the training class frequencies (their entropy), or
    /// mean squared error of always predicting the training targets' mean (their variance).
    pub baseline_loss: Option<f64>,
    /// The largest |mean| or standard deviation of a feature.
    pub input_scale: f64,
}

/// How many images read from files `DataProfile::of` decodes for the inputs' scale.
const PROFILED_FILES: usize = 512;

impl DataProfile {
    /// Profiles the training data of a model `M`: ids (token ids) are indices, not
    /// magnitudes, so their scale is not judged.
    pub fn for_model<M: crate::Model>(data: &Data) -> Self {
        let mut profile = Self::of(data);
        if <M::Input as kiln_common::BatchInput>::IDS {
            profile.input_scale = 0.0;
        }
        profile
    }

    /// Profiles the training data (of images read from files, the first 512).
    pub fn of(data: &Data) -> Self {
        let baseline_loss = match &data.y {
            Targets::Classes { labels, .. } if !labels.is_empty() => {
                let n = labels.len() as f64;
                let entropy = data
                    .class_counts()
                    .iter()
                    .filter(|&&c| c > 0)
                    .map(|&c| {
                        let p = c as f64 / n;
                        -p * p.ln()
                    })
                    .sum();
                Some(entropy)
            }
            Targets::Values { values, names } if !values.is_empty() => {
                let width = names.len().max(1);
                let rows = (values.len() / width) as f64;
                let variance = (0..width)
                    .map(|j| {
                        let column = values.iter().skip(j).step_by(width).map(|&v| v as f64);
                        let mean = column.clone().sum::<f64>() / rows;
                        column.map(|v| (v - mean).powi(2)).sum::<f64>() / rows
                    })
                    .sum::<f64>()
                    / width as f64;
                Some(variance)
            }
            _ => None,
        };
        let d = data.sample_len().max(1);
        // Images read from files: the scale of the first ones, decoded for it.
        let decoded;
        let x = match data.is_streamed() {
            false => &data.x,
            true => {
                let first: Vec<usize> = (0..data.len().min(PROFILED_FILES)).collect();
                decoded = data
                    .subset(&first)
                    .in_memory()
                    .map(|d| d.x)
                    .unwrap_or_default();
                &decoded
            }
        };
        let n = (x.len() / d).max(1) as f64;
        let input_scale = (0..d)
            .map(|j| {
                let column = x.iter().skip(j).step_by(d).map(|&v| v as f64);
                let mean = column.clone().sum::<f64>() / n;
                let std = (column.map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
                mean.abs().max(std)
            })
            .fold(0.0, f64::max);
        Self {
            baseline_loss,
            input_scale,
        }
    }
}

/// Reads `history` (and, when known, the data's profile and the gradients' statistics)
/// against every rule.
pub fn diagnose(
    history: &History,
    profile: Option<&DataProfile>,
    gradients: &[EpochGradients],
) -> Diagnosis {
    let mut diagnosis = Diagnosis::default();
    gradient_findings(gradients, &mut diagnosis);
    let gradient_cause = diagnosis.findings.iter().any(|f| {
        matches!(
            f.kind,
            FindingKind::VanishingGradients | FindingKind::DeadUnits | FindingKind::SaturatedUnits
        )
    });
    let epochs = &history.epochs;
    let Some(first) = epochs.first() else {
        return diagnosis;
    };
    let baseline = profile.and_then(|p| p.baseline_loss).filter(|b| *b > 0.0);
    if let Some(p) = profile
        && p.input_scale > UNSCALED
    {
        diagnosis.findings.push(Finding {
            kind: FindingKind::UnscaledInputs,
            epoch: 1,
            layer: None,
            statistic: "largest |mean| or std of an input feature".into(),
            value: p.input_scale,
            threshold: UNSCALED,
            message: "the inputs are far from unit scale, so the first layer's weighted sums \
                      are huge and the gradients badly conditioned"
                .into(),
            advice: "standardise the features (kiln does for CSV tables); for images in \
                     0-255, divide by 255 or use --normalize"
                .into(),
        });
    }
    let poor = |loss: f64| baseline.is_none_or(|b| loss >= STILL_POOR * b);
    let mut seen = BTreeSet::new();
    let mut lowest = f64::INFINITY;
    for (i, e) in epochs.iter().enumerate() {
        lowest = lowest.min(e.train_loss);
        let lr = e.lr;
        let diverged = seen.contains(&FindingKind::Diverged);
        // One verdict on the learning rate: a run's later stretch does not reverse it.
        let judged =
            seen.contains(&FindingKind::LrTooHigh) || seen.contains(&FindingKind::LrTooLow);
        let mut push = |kind, statistic: &str, value, threshold, message: &str, advice: String| {
            if seen.insert(kind) {
                diagnosis.findings.push(Finding {
                    kind,
                    epoch: e.epoch,
                    layer: None,
                    statistic: statistic.into(),
                    value,
                    threshold,
                    message: message.into(),
                    advice,
                });
            }
        };
        // Diverged: far worse than ignoring the inputs, or than the first epoch.
        let (ratio, against) = match baseline {
            Some(b) => (e.train_loss / b, "training loss / baseline loss"),
            None => (
                e.train_loss / first.train_loss,
                "training loss / first epoch's",
            ),
        };
        if ratio >= DIVERGED_FACTOR || (i > 0 && e.train_loss / first.train_loss >= 100.0) {
            push(
                FindingKind::Diverged,
                against,
                ratio,
                DIVERGED_FACTOR,
                "the loss grew far beyond where it started (it stayed finite, so nothing \
                 stopped the run): the steps are too large and the weights blew up",
                format!(
                    "lower the learning rate, for example --lr {:e} (or take `kiln lr-find`'s \
                     suggestion), and --clip-norm 1 to cap each step",
                    lr / 100.0
                ),
            );
            continue;
        }
        // After a divergence the weights are garbage, and a gradient finding names why the
        // loss stalls: the learning-rate rules have nothing to add to them.
        if diverged || gradient_cause || judged {
            continue;
        }
        let window = &epochs[i.saturating_sub(WINDOW)..=i];
        if window.len() <= 2 || !poor(e.train_loss) {
            continue;
        }
        let steps = window.len() - 1;
        let rises = window
            .windows(2)
            .filter(|w| w[1].train_loss > w[0].train_loss * (1.0 + RISE))
            .count();
        let above = e.train_loss / lowest;
        if 2 * rises >= steps || above > ABOVE_LOWEST {
            let (statistic, value, threshold) = if 2 * rises >= steps {
                (
                    "share of the last epochs whose training loss rose",
                    rises as f64 / steps as f64,
                    0.5,
                )
            } else {
                ("training loss / its lowest so far", above, ABOVE_LOWEST)
            };
            push(
                FindingKind::LrTooHigh,
                statistic,
                value,
                threshold,
                "the loss goes up and down instead of down: each step overshoots the minimum \
                 it aims at",
                format!(
                    "lower the learning rate, for example --lr {:e} (`kiln lr-find` suggests one)",
                    lr / 10.0
                ),
            );
        } else if window.len() > WINDOW {
            let fall = (window[0].train_loss - e.train_loss) / window[0].train_loss / steps as f64;
            if fall < STALLED {
                push(
                    FindingKind::LrTooLow,
                    "relative fall of the training loss per epoch",
                    fall,
                    STALLED,
                    "the loss barely moves while the model is still poor: the steps are too \
                     small to get anywhere in the epochs given",
                    format!(
                        "raise the learning rate, for example --lr {:e} (`kiln lr-find` \
                         suggests one)",
                        lr * 10.0
                    ),
                );
            }
        }
    }
    // A diverged run's validation curve is noise, and a learning-rate finding already names
    // why a model stayed poor, with its fix.
    if seen.contains(&FindingKind::Diverged) {
        settle(&mut diagnosis);
        return diagnosis;
    }
    overfitting(history, baseline, &mut diagnosis);
    if let (Some(b), Some(best)) = (
        baseline,
        epochs
            .iter()
            .map(|e| e.val_loss)
            .filter(|v| v.is_finite())
            .reduce(f64::min),
    ) && best >= UNDERFIT * b
        && seen.is_empty()
        && !gradient_cause
        && epochs.len() >= WINDOW
    {
        diagnosis.findings.push(Finding {
            kind: FindingKind::Underfitting,
            epoch: epochs.len(),
            layer: None,
            statistic: "best validation loss / baseline loss".into(),
            value: best / b,
            threshold: UNDERFIT,
            message: "the model is no better than one that ignores its inputs (always the \
                      most frequent class, or the mean)"
                .into(),
            advice: "check the learning rate (`kiln lr-find`), then give the model more \
                     capacity (--hidden), other activations (--activation relu) or more epochs"
                .into(),
        });
    }
    settle(&mut diagnosis);
    diagnosis
}

/// The diagnosis of a run that TerminateOnNaN stopped: the rules on the epochs it completed
/// and the measurements up to the failing step (`gradients` ends with the failing epoch's
/// part), and the non-finite loss itself as a divergence.
pub(crate) fn diagnose_non_finite(
    history: &History,
    profile: Option<&DataProfile>,
    gradients: &[EpochGradients],
    epoch: usize,
    loss: f64,
    lr: f64,
) -> Diagnosis {
    let mut diagnosis = diagnose(history, profile, gradients);
    if !diagnosis
        .findings
        .iter()
        .any(|f| f.kind == FindingKind::Diverged)
    {
        diagnosis.findings.push(Finding {
            kind: FindingKind::Diverged,
            epoch,
            layer: None,
            statistic: "training loss".into(),
            value: loss,
            threshold: f64::INFINITY,
            message: format!(
                "the loss became {loss} and the run stopped (TerminateOnNaN): the steps grew \
                 until the numbers overflowed"
            ),
            advice: format!(
                "lower the learning rate, for example --lr {:e}, and --clip-norm 1 to cap each \
                 step",
                lr / 10.0
            ),
        });
    }
    settle(&mut diagnosis);
    diagnosis
}

/// Orders the findings by the epoch first seen, and drops those that a blown-up run causes
/// (its units die and its gradients vanish once the weights are huge): its finding is the
/// divergence, with the fix.
fn settle(diagnosis: &mut Diagnosis) {
    let blown_up = diagnosis.findings.iter().any(|f| {
        matches!(
            f.kind,
            FindingKind::Diverged | FindingKind::ExplodingGradients
        )
    });
    if blown_up {
        diagnosis.findings.retain(|f| {
            !matches!(
                f.kind,
                FindingKind::VanishingGradients
                    | FindingKind::DeadUnits
                    | FindingKind::SaturatedUnits
            )
        });
    }
    diagnosis.findings.sort_by_key(|f| f.epoch);
}

/// The validation loss rising above its best while the training loss falls (and stands below
/// [`STILL_POOR`] of the baseline), for [`SUSTAINED`] epochs in a row, and never back below
/// that best later (a single noisy epoch of a small validation set is no
/// trend): a finding when it rose far ([`OVERFIT`]), a note when it rose a little
/// ([`OVERFIT_NOTE`]).
fn overfitting(history: &History, baseline: Option<f64>, diagnosis: &mut Diagnosis) {
    let epochs: Vec<&crate::EpochRecord> = history
        .epochs
        .iter()
        .filter(|e| e.val_loss.is_finite())
        .collect();
    let mut noted = false;
    for (i, e) in epochs.iter().enumerate() {
        // The gap: far better on the training data than on data not trained on, whether or
        // not the validation loss has started to rise.
        if let Some(b) = baseline
            && i + 1 >= SUSTAINED
            && epochs[i + 1 - SUSTAINED..=i].iter().all(|x| {
                x.val_loss >= GAP_RATIO * x.train_loss && x.val_loss - x.train_loss >= GAP * b
            })
        {
            diagnosis.findings.push(Finding {
                kind: FindingKind::Overfitting,
                epoch: e.epoch,
                layer: None,
                statistic: format!("validation loss / training loss, {SUSTAINED} epochs running"),
                value: e.val_loss / e.train_loss.max(1e-12),
                threshold: GAP_RATIO,
                message: "the model does far better on its training data than on data it has \
                          not seen: it memorises the training data instead of learning what \
                          generalises"
                    .into(),
                advice: "regularise: --dropout 0.3, --weight-decay 1e-4, --augment for images, \
                         or more training data"
                    .into(),
            });
            return;
        }
        let Some(best) = epochs[..=i]
            .iter()
            .copied()
            .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss))
        else {
            continue;
        };
        let since = i - epochs
            .iter()
            .position(|x| x.epoch == best.epoch)
            .unwrap_or(i);
        // A model still near the baseline has learned nothing to overfit with: its rising
        // validation loss is a learning-rate problem.
        let learned = baseline.is_none_or(|b| e.train_loss < STILL_POOR * b);
        if since < SUSTAINED || e.train_loss >= best.train_loss || !learned {
            continue;
        }
        let last = &epochs[i + 1 - SUSTAINED..=i];
        let floor = best.val_loss.max(1e-12);
        let risen = |factor: f64| last.iter().all(|x| x.val_loss >= factor * floor);
        let ratio = e.val_loss / floor;
        // A rise that a later epoch undid (a new lowest validation loss) was noise (SGD with
        // momentum on a small validation set), not memorising.
        let undone = epochs[i + 1..].iter().any(|x| x.val_loss < best.val_loss);
        if risen(OVERFIT) && !undone {
            diagnosis.findings.push(Finding {
                kind: FindingKind::Overfitting,
                epoch: e.epoch,
                layer: None,
                statistic: format!(
                    "validation loss / its lowest (epoch {}), {SUSTAINED} epochs running",
                    best.epoch
                ),
                value: ratio,
                threshold: OVERFIT,
                message: "the validation loss rose far above its best and stayed there while \
                          the training loss kept falling: the model memorises the training \
                          data instead of learning what generalises"
                    .into(),
                advice: "regularise: --dropout 0.3, --weight-decay 1e-4, --augment for images, \
                         or keep the best epoch (--patience 5 restores it)"
                    .into(),
            });
            return;
        }
        if risen(OVERFIT_NOTE) && !noted && !undone {
            noted = true;
            diagnosis.notes.push(format!(
                "the validation loss stood {:.0}% or more above its lowest (epoch {}) for \
                 {SUSTAINED} epochs by epoch {} while the training loss kept falling: the \
                 start of overfitting; epoch {}'s weights are the ones to keep",
                (OVERFIT_NOTE - 1.0) * 100.0,
                best.epoch,
                e.epoch,
                best.epoch
            ));
        }
    }
}

impl Diagnosis {
    /// The diagnosis of a run whose early stopping kept the weights of `epoch`: overfitting
    /// first seen after it is no problem of the model kept, only worth a note (Keras's
    /// `restore_best_weights` did its job).
    pub fn kept_epoch(mut self, epoch: usize) -> Self {
        let (after, kept): (Vec<Finding>, Vec<Finding>) = self
            .findings
            .into_iter()
            .partition(|f| f.kind == FindingKind::Overfitting && f.epoch > epoch);
        self.findings = kept;
        for f in after {
            self.notes.push(format!(
                "overfitting from epoch {} ({} {} against {}); early stopping kept epoch \
                 {epoch}'s weights, from before it. To train on for longer: {}",
                f.epoch,
                f.statistic,
                short(f.value),
                short(f.threshold),
                f.advice
            ));
        }
        self
    }
}

impl Finding {
    /// The finding as one line: what was seen, what it means, what to try.
    pub fn line(&self) -> String {
        format!(
            "{} (epoch {}): {} {} against a threshold of {}; {}. Try: {}",
            self.kind.name(),
            self.epoch,
            self.statistic,
            short(self.value),
            short(self.threshold),
            self.message,
            self.advice
        )
    }
}

impl FindingKind {
    /// The kind as `diagnosis.json` spells it.
    pub fn name(&self) -> &'static str {
        match self {
            FindingKind::Diverged => "diverged",
            FindingKind::LrTooHigh => "lr_too_high",
            FindingKind::LrTooLow => "lr_too_low",
            FindingKind::Overfitting => "overfitting",
            FindingKind::Underfitting => "underfitting",
            FindingKind::UnscaledInputs => "unscaled_inputs",
            FindingKind::VanishingGradients => "vanishing_gradients",
            FindingKind::ExplodingGradients => "exploding_gradients",
            FindingKind::DeadUnits => "dead_units",
            FindingKind::SaturatedUnits => "saturated_units",
        }
    }
}

fn short(v: f64) -> String {
    if v != 0.0 && !(1e-3..1e5).contains(&v.abs()) {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
    }
}

impl std::fmt::Display for Diagnosis {
    /// The end-of-run report: one line per finding and note, or one line saying the run
    /// looks healthy.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.findings.is_empty() {
            writeln!(f, "diagnosis: no problem found")?;
        }
        for finding in &self.findings {
            writeln!(f, "diagnosis: {}", finding.line())?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}

/// A callback that diagnoses the history (and the gradients a [`GradientProbe`] measured)
/// after every epoch and prints each finding once, as one line on standard error, when first
/// seen (quiet under [`Verbosity::Quiet`]). The trainer runs one in every `fit`.
pub struct Diagnoser {
    profile: Option<DataProfile>,
    verbosity: Verbosity,
    probe: Option<Arc<GradientProbe>>,
    gradients: Arc<Mutex<Vec<EpochGradients>>>,
    printed: BTreeSet<FindingKind>,
}

impl Diagnoser {
    /// Diagnoses against the training data's `profile` (see [`DataProfile::of`]).
    pub fn new(profile: Option<DataProfile>, verbosity: Verbosity) -> Self {
        Self {
            profile,
            verbosity,
            probe: None,
            gradients: Arc::default(),
            printed: BTreeSet::new(),
        }
    }

    /// Reads the gradient statistics `probe` measures, taking each epoch's at its end.
    pub fn with_probe(mut self, probe: Option<Arc<GradientProbe>>) -> Self {
        self.probe = probe;
        self
    }

    /// The epochs' gradient statistics so far, shared with the caller.
    pub fn gradients(&self) -> Arc<Mutex<Vec<EpochGradients>>> {
        self.gradients.clone()
    }

    /// Every epoch's gradient statistics, with the measurements of the epoch under way (a run
    /// stopped mid-epoch) as its own last entry.
    pub(crate) fn gradients_so_far(&self, epoch: usize) -> Vec<EpochGradients> {
        let mut all = self.gradients.lock().expect("gradients lock").clone();
        if let Some(probe) = &self.probe {
            let params = probe.take_epoch();
            if !params.is_empty() {
                all.push(EpochGradients {
                    epoch,
                    params,
                    units: Vec::new(),
                });
            }
        }
        all
    }

    /// The last epoch's gradient statistics, if measured.
    pub fn last_gradients(&self) -> Option<EpochGradients> {
        self.gradients
            .lock()
            .expect("gradients lock")
            .last()
            .cloned()
    }

    /// The last epoch's weight and gradient histograms (none without a probe keeping them).
    pub fn take_histograms(&self) -> Vec<crate::ParamHistograms> {
        self.probe
            .as_ref()
            .map(|p| p.take_histograms())
            .unwrap_or_default()
    }
}

impl Callback for Diagnoser {
    fn on_epoch_end(&mut self, history: &History) -> ControlFlow<()> {
        let mut gradients = self.gradients.lock().expect("gradients lock");
        if let (Some(probe), Some(last)) = (&self.probe, history.epochs.last()) {
            gradients.push(EpochGradients {
                epoch: last.epoch,
                params: probe.take_epoch(),
                units: probe.take_units(),
            });
        }
        for finding in diagnose(history, self.profile.as_ref(), &gradients).findings {
            if self.printed.insert(finding.kind) && self.verbosity != Verbosity::Quiet {
                eprintln!("kiln: {}", finding.line());
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EpochRecord;

    /// A history of (train_loss, val_loss) pairs at learning rate `lr`.
    fn history(losses: &[(f64, f64)], lr: f64) -> History {
        History {
            epochs: losses
                .iter()
                .enumerate()
                .map(|(i, &(train_loss, val_loss))| EpochRecord {
                    epoch: i + 1,
                    train_loss,
                    train_accuracy: None,
                    val_loss,
                    val_accuracy: None,
                    lr,
                    seconds: 1.0,
                    train_seconds: None,
                    metrics: Default::default(),
                })
                .collect(),
        }
    }

    fn profile(baseline: f64) -> DataProfile {
        DataProfile {
            baseline_loss: Some(baseline),
            input_scale: 1.0,
        }
    }

    fn kinds(d: &Diagnosis) -> Vec<(FindingKind, usize)> {
        d.findings.iter().map(|f| (f.kind, f.epoch)).collect()
    }

    #[test]
    fn a_finite_loss_far_above_the_baseline_has_diverged() {
        // House prices at --lr 1e6: a loss of 3.7e26 every epoch, finite, on scaled targets.
        let h = history(
            &[
                (3.7e26, 3.6e26),
                (4.1e26, 3.9e26),
                (2.2e26, 3.0e26),
                (5.0e26, 4.0e26),
            ],
            1e6,
        );
        let d = diagnose(&h, Some(&profile(1.0)), &[]);
        assert_eq!(kinds(&d), [(FindingKind::Diverged, 1)]);
        let f = &d.findings[0];
        assert_eq!((f.value, f.threshold), (3.7e26, DIVERGED_FACTOR));
        assert!(
            f.advice.contains("--lr 1e4") && f.advice.contains("--clip-norm 1"),
            "{f:?}"
        );
        // Without a baseline (a run diagnosed from history.csv alone): against epoch 1.
        let h = history(&[(2.0, 2.0), (50.0, 60.0), (400.0, 500.0)], 0.1);
        assert_eq!(
            kinds(&diagnose(&h, None, &[])),
            [(FindingKind::Diverged, 2)]
        );
    }

    #[test]
    fn the_learning_rate_rules_read_the_training_loss() {
        // Oscillating near the baseline (ln 10 = 2.30 for ten balanced classes).
        let high = [
            (2.2, 2.2),
            (2.0, 2.1),
            (2.3, 2.3),
            (1.9, 2.0),
            (2.4, 2.4),
            (2.1, 2.2),
        ];
        let d = diagnose(&history(&high, 0.5), Some(&profile(2.30)), &[]);
        assert_eq!(kinds(&d)[0], (FindingKind::LrTooHigh, 3));
        assert!(
            d.findings[0].advice.contains("--lr 5e-2"),
            "{:?}",
            d.findings[0]
        );
        // Creeping down 0.2% per epoch: stalled.
        let low: Vec<(f64, f64)> = (0..10)
            .map(|i| (2.30 * 0.998f64.powi(i), 2.30 * 0.998f64.powi(i)))
            .collect();
        let d = diagnose(&history(&low, 1e-7), Some(&profile(2.30)), &[]);
        assert_eq!(kinds(&d)[0], (FindingKind::LrTooLow, 6));
        assert!(
            d.findings[0].advice.contains("--lr 1e-6"),
            "{:?}",
            d.findings[0]
        );
        // The learning rate is named as the cause, not underfitting besides.
        assert_eq!(kinds(&d), [(FindingKind::LrTooLow, 6)]);
        // A model that stays at the baseline with the loss settled: underfitting, at the end.
        let flat = [(2.4, 2.3), (2.3, 2.3), (2.3, 2.3), (2.3, 2.29), (2.3, 2.3)];
        let d = diagnose(&history(&flat, 1e-3), None, &[]);
        assert!(d.findings.is_empty(), "no baseline, no verdict: {d:?}");
        let d = diagnose(&history(&flat, 1e-3), Some(&profile(2.30)), &[]);
        assert_eq!(kinds(&d), [(FindingKind::Underfitting, 5)], "{d:?}");
    }

    #[test]
    fn overfitting_is_a_finding_when_far_and_a_note_when_mild() {
        let far = [
            (1.0, 0.9),
            (0.6, 0.5),
            (0.3, 0.4),
            (0.28, 0.45),
            (0.26, 0.55),
            (0.25, 0.65),
            (0.24, 0.7),
            (0.23, 0.75),
        ];
        let d = diagnose(&history(&far, 1e-3), Some(&profile(2.3)), &[]);
        assert_eq!(kinds(&d), [(FindingKind::Overfitting, 8)], "{d:?}");
        assert!(d.findings[0].statistic.contains("epoch 3"));
        assert!(d.notes[0].contains("for 3 epochs by epoch 6"), "{d:?}");
        // The digits' default run: validation 0.061 at its best, then a little above it.
        let mild = [
            (0.5, 0.3),
            (0.2, 0.12),
            (0.1, 0.061),
            (0.05, 0.068),
            (0.03, 0.070),
            (0.02, 0.072),
        ];
        let d = diagnose(&history(&mild, 1e-3), Some(&profile(2.3)), &[]);
        assert!(d.findings.is_empty(), "{d:?}");
        assert!(
            d.notes[0].contains("stood 10% or more above its lowest (epoch 3) for 3 epochs"),
            "{d:?}"
        );
        // One noisy epoch of a small validation set (SGD with momentum on the digits): no
        // trend, nothing said.
        let spike = [
            (1.0, 0.9),
            (0.5, 0.4),
            (0.3, 0.3),
            (0.2, 0.7),
            (0.15, 0.28),
            (0.1, 0.27),
        ];
        let d = diagnose(&history(&spike, 1e-3), Some(&profile(2.3)), &[]);
        assert_eq!(d, Diagnosis::default());
        // Three epochs far above the best, then a new best: SGD with momentum at --lr 0.02 on
        // the digits' 360 validation samples.
        let back = [
            (0.33, 0.216),
            (0.14, 0.107),
            (0.096, 0.113),
            (0.086, 0.209),
            (0.068, 0.216),
            (0.058, 0.207),
            (0.056, 0.19),
            (0.048, 0.065),
        ];
        let d = diagnose(&history(&back, 1e-3), Some(&profile(2.3)), &[]);
        assert_eq!(d, Diagnosis::default());
        let d = diagnose(&history(&back[..7], 1e-3), Some(&profile(2.3)), &[]);
        assert_eq!(
            kinds(&d),
            [(FindingKind::Overfitting, 6)],
            "until the new best"
        );
    }

    #[test]
    fn overfitting_after_the_epoch_early_stopping_kept_is_a_note() {
        let far = [
            (1.0, 0.9),
            (0.6, 0.5),
            (0.3, 0.4),
            (0.28, 0.65),
            (0.26, 0.65),
            (0.25, 0.65),
        ];
        let d = diagnose(&history(&far, 1e-3), Some(&profile(2.3)), &[]);
        assert_eq!(kinds(&d), [(FindingKind::Overfitting, 6)]);
        let kept = d.clone().kept_epoch(3);
        assert_eq!(kinds(&kept), []);
        assert!(
            kept.notes
                .iter()
                .any(|n| n.contains("overfitting from epoch 6") && n.contains("kept epoch 3")),
            "{kept:?}"
        );
        assert_eq!(d.clone().kept_epoch(6), d, "kept after it: still a finding");
    }

    #[test]
    fn a_wide_gap_is_overfitting_unless_the_model_learned_nothing() {
        // 150 digits and a wide network: the training loss falls to nothing, the validation
        // loss stays where it was (it never rises).
        let memorising = [
            (2.0, 1.9),
            (0.5, 0.6),
            (0.1, 0.35),
            (0.02, 0.3),
            (0.01, 0.3),
            (0.005, 0.3),
        ];
        let d = diagnose(&history(&memorising, 1e-3), Some(&profile(2.3)), &[]);
        assert_eq!(kinds(&d), [(FindingKind::Overfitting, 5)], "{d:?}");
        assert_eq!(d.findings[0].threshold, GAP_RATIO);
        assert!((d.findings[0].value - 30.0).abs() < 1e-9);
        // Still at the baseline: a rising validation loss is no overfitting.
        let nothing = [
            (2.3, 2.3),
            (2.25, 2.4),
            (2.2, 2.6),
            (2.2, 2.8),
            (2.2, 3.0),
            (2.2, 3.2),
        ];
        let d = diagnose(&history(&nothing, 1e-3), Some(&profile(2.3)), &[]);
        assert!(
            !d.findings
                .iter()
                .any(|f| f.kind == FindingKind::Overfitting),
            "{d:?}"
        );
    }

    #[test]
    fn a_learning_rate_too_high_is_not_also_too_low() {
        // SGD at --lr 0.5 on the airline series: rises early, then a slow stretch.
        let h = [
            (1.0, 1.0),
            (1.3, 1.2),
            (0.9, 1.0),
            (1.4, 1.3),
            (0.95, 1.0),
            (0.94, 1.0),
            (0.94, 1.0),
            (0.93, 1.0),
            (0.93, 1.0),
            (0.93, 1.0),
        ];
        let d = diagnose(&history(&h, 0.5), Some(&profile(1.0)), &[]);
        assert_eq!(kinds(&d), [(FindingKind::LrTooHigh, 3)], "{d:?}");
    }

    #[test]
    fn a_loss_that_became_nan_is_a_divergence_with_what_led_to_it() {
        let h = history(&[(1.0, 1.0)], 2.0);
        let blown = EpochGradients {
            epoch: 2,
            params: vec![ParamStats {
                update_ratio: Some(30.0),
                ..param("lstms.0.weight_ih", 1.0, 0.0, 30.0)
            }],
            units: Vec::new(),
        };
        let d = diagnose_non_finite(&h, Some(&profile(1.0)), &[blown], 2, f64::INFINITY, 2.0);
        assert_eq!(
            kinds(&d),
            [
                (FindingKind::ExplodingGradients, 2),
                (FindingKind::Diverged, 2)
            ]
        );
        assert!(d.findings[1].advice.contains("--lr 2e-1"), "{d:?}");
    }

    #[test]
    fn a_healthy_run_has_no_finding_and_says_so() {
        let healthy = [
            (1.8, 1.2),
            (0.9, 0.6),
            (0.5, 0.4),
            (0.35, 0.3),
            (0.3, 0.28),
            (0.27, 0.27),
        ];
        let d = diagnose(&history(&healthy, 1e-3), Some(&profile(2.3)), &[]);
        assert_eq!(d, Diagnosis::default());
        assert_eq!(d.to_string(), "diagnosis: no problem found\n");
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json, serde_json::json!({"findings": [], "notes": []}));
    }

    #[test]
    fn the_profile_holds_the_trivial_baseline_and_the_input_scale() {
        // Classes 3:1: entropy -(0.75 ln 0.75 + 0.25 ln 0.25).
        let classes = Targets::Classes {
            labels: vec![0, 0, 0, 1],
            names: vec!["a".into(), "b".into()],
        };
        let data = Data::new(vec![0., 200., 0., 200.], vec![1], classes).unwrap();
        let p = DataProfile::of(&data);
        let entropy = -(0.75f64 * 0.75f64.ln() + 0.25 * 0.25f64.ln());
        assert!((p.baseline_loss.unwrap() - entropy).abs() < 1e-12);
        assert_eq!(p.input_scale, 100.0, "mean 100, std 100");
        let d = diagnose(&history(&[(0.5, 0.5)], 1e-3), Some(&p), &[]);
        assert_eq!(kinds(&d), [(FindingKind::UnscaledInputs, 1)]);
        // Values 1, 3: variance 1.
        let values = Targets::Values {
            values: vec![1., 3.],
            names: vec!["y".into()],
        };
        let data = Data::new(vec![0., 1.], vec![1], values).unwrap();
        assert_eq!(DataProfile::of(&data).baseline_loss, Some(1.0));
    }

    fn param(name: &str, grad_mean_abs: f64, zero: f64, update: f64) -> ParamStats {
        ParamStats {
            name: name.into(),
            size: 64,
            grad_norm: grad_mean_abs * 8.0,
            grad_mean_abs,
            zero_grad_share: zero,
            weight_norm: 1.0,
            weight_var: 0.01,
            update_ratio: Some(update),
        }
    }

    fn layers(first: f64, update: f64) -> Vec<ParamStats> {
        vec![
            param("hidden.0.linear.weight", first, 0.05, update),
            param("hidden.0.linear.bias", first, 0.0, update),
            param("hidden.1.linear.weight", 1e-2, 0.0, 1e-3),
            param("output.weight", 1e-2, 0.0, 1e-3),
        ]
    }

    fn units(dead: Option<f64>, saturated: Option<f64>) -> Vec<UnitStats> {
        vec![UnitStats {
            layer: "hidden.0".into(),
            units: 64,
            dead_share: dead,
            saturated_share: saturated,
        }]
    }

    fn epochs(measured: Vec<(Vec<ParamStats>, Vec<UnitStats>)>) -> Vec<EpochGradients> {
        measured
            .into_iter()
            .enumerate()
            .map(|(i, (params, units))| EpochGradients {
                epoch: i + 1,
                params,
                units,
            })
            .collect()
    }

    #[test]
    fn the_gradient_rules_name_the_layer_and_a_blown_up_run_only_its_cause() {
        let healthy = (layers(3e-3, 1e-3), units(Some(0.1), None));
        let vanishing = (layers(3e-9, 1e-3), units(Some(0.1), None));
        let dead = (layers(3e-3, 1e-3), units(Some(0.7), None));
        let h = history(&[(1.0, 1.0), (0.8, 0.8), (0.6, 0.6)], 1e-3);
        let d = diagnose(
            &h,
            None,
            &epochs(vec![healthy.clone(), vanishing, healthy.clone()]),
        );
        assert_eq!(kinds(&d), [(FindingKind::VanishingGradients, 2)]);
        assert_eq!(d.findings[0].layer.as_deref(), Some("hidden.0.linear"));
        assert!(d.findings[0].advice.contains("--activation relu"));
        let d = diagnose(&h, None, &epochs(vec![healthy.clone(), dead.clone()]));
        assert_eq!(kinds(&d), [(FindingKind::DeadUnits, 2)]);
        assert_eq!(d.findings[0].layer.as_deref(), Some("hidden.0"));
        assert!(d.findings[0].advice.contains("leaky-relu"));
        let saturated = (layers(3e-3, 1e-3), units(None, Some(0.6)));
        let d = diagnose(&h, None, &epochs(vec![saturated]));
        assert_eq!(kinds(&d), [(FindingKind::SaturatedUnits, 1)]);
        assert!(d.findings[0].advice.contains("--normalize"));
        let just_under = (layers(3e-3, 1e-3), units(Some(0.49), Some(0.49)));
        let d = diagnose(&h, None, &epochs(vec![just_under]));
        assert_eq!(kinds(&d), []);
        // A weight moved by twice its norm in one step: exploding, and the dead units it left
        // behind are its consequence, not a finding of their own.
        let mut blown = dead;
        blown.0[0].update_ratio = Some(2.0);
        let d = diagnose(&h, None, &epochs(vec![healthy, blown]));
        assert_eq!(kinds(&d), [(FindingKind::ExplodingGradients, 2)]);
        assert!(d.findings[0].advice.contains("--clip-norm 1"));
    }

    #[test]
    fn gradient_statistics_read_back_from_their_csv() {
        let gradients = vec![
            EpochGradients {
                epoch: 1,
                params: layers(3e-3, 1e-3),
                units: units(Some(0.25), None),
            },
            EpochGradients {
                epoch: 2,
                params: vec![ParamStats {
                    update_ratio: None,
                    ..param("output.weight", 1.0 / 3.0, 0.0, 0.0)
                }],
                units: units(None, Some(1.0 / 3.0)),
            },
        ];
        let text = gradients_to_csv(&gradients);
        assert!(
            text.starts_with(
                "epoch,parameter,statistic,value\n1,hidden.0.linear.weight,size,64.0\n"
            )
        );
        assert_eq!(gradients_from_csv(&text), Ok(gradients));
        let err =
            gradients_from_csv("epoch,parameter,statistic,value\n1,w,grad_norm,x\n").unwrap_err();
        assert_eq!(err, "row 1, column value: `x` is not a number");
    }
}
