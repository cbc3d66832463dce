//! `kiln predict`: a finished run's predictions for new rows, images or texts, written as the
//! task needs them (an id, then the predicted value, or the class and its probability).

use anyhow::{Result, bail};
use kiln::backend;
use kiln::cnn::Cnn;
use kiln::datasets::{
    Data, IdColumn, InputColumns, TargetScaler, load_inputs_csv, predictions_csv, read_id_column,
};
use kiln::fnn::Mlp;
use kiln::lstm::SequenceModel;
use kiln::train::{RunDir, Task, predict as outputs_of, write_atomic};

use crate::args::PredictArgs;
use crate::dataset::{Columns, DatasetSpec, Scaler};

use super::evaluate::{TARGET_SCALER, open_finished};
use super::spec::{ModelSpec, RunConfig, TransformerInput};
use super::{EVAL_BATCH, err_line};

/// The file a run keeps its column names in.
pub(super) const COLUMNS: &str = "columns.json";

pub fn predict(args: &PredictArgs) -> Result<()> {
    let run = open_finished(&args.run)?;
    let config: RunConfig = run.read_json("config.json")?;
    if config.trainer.masked_lm.is_some() {
        bail!(
            "{} is a pre-trained masked-language model: it fills in hidden words, it does not \
             classify; fine-tune it first (kiln train --init-from {} ...)",
            args.run.display(),
            args.run.display()
        );
    }
    let (_, device) = backend::device(args.device.as_deref())?;
    let columns = columns_of(&run)?;
    let scaler: Option<Scaler> = read_if_there(&run, "scaler.json")?;
    let targets: Option<TargetScaler> = read_if_there(&run, TARGET_SCALER)?;
    let (inputs, ids) = match &scaler {
        Some(Scaler::Text(encoder)) => {
            let column = config
                .data
                .sequence
                .text_column
                .as_deref()
                .unwrap_or("text");
            let texts = kiln::datasets::load_texts_csv(&args.input, column)?;
            (encoder.encode_texts(&texts), read_id_column(&args.input)?)
        }
        Some(Scaler::Series(_)) => bail!(
            "predict takes new rows of features, images or texts; a series run reports its \
             forecasts with `kiln eval --run {}`",
            args.run.display()
        ),
        other if config.data.is_image_files() => {
            // A folder (or one file) of images, resized and converted as the run's were.
            let ModelSpec::Cnn(cnn) = &config.model else {
                bail!("a run on image files predicts with its CNN");
            };
            let shape = [cnn.in_channels, cnn.image_size[0], cnn.image_size[1]];
            let mut inputs = kiln::datasets::image_inputs(&args.input, shape)?;
            if let Some(scaler) = other {
                scaler.transform(&mut inputs)?;
            }
            let files = inputs.files.as_ref().expect("read from files");
            let ids = IdColumn {
                name: "path".into(),
                values: files
                    .paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
            };
            (inputs, Some(ids))
        }
        other => {
            let (mut inputs, ids) = if config.data.is_images() {
                (kiln::datasets::digit_recognizer_test(&args.input)?, None)
            } else {
                let read = load_inputs_csv(
                    &args.input,
                    InputColumns {
                        features: columns.features.as_deref(),
                        targets: &columns.targets,
                    },
                )?;
                if read.headerless {
                    err_line(&format!(
                        "kiln: {} has no header row (its first row is numbers): every row is \
                         read as data, its columns in the model's order",
                        args.input.display()
                    ))?;
                }
                (read.data, read.ids)
            };
            if let Some(scaler) = other {
                scaler.transform(&mut inputs)?;
            }
            (inputs, ids)
        }
    };
    let mut outputs = model_outputs(&run, &config.model, inputs, &args.input, &device)?;
    if let Some(targets) = &targets {
        targets.inverse(&mut outputs);
    }
    let kaggle = matches!(config.data.dataset, DatasetSpec::DigitsCsv(_));
    let (header, rows) = prediction_table(config.trainer.task, &columns, ids, &outputs, kaggle);
    write_atomic(&args.output, predictions_csv(&header, &rows).as_bytes())?;
    err_line(&format!(
        "kiln: {} predictions written to {}",
        rows.len(),
        args.output.display()
    ))
}

fn read_if_there<T: serde::de::DeserializeOwned>(run: &RunDir, name: &str) -> Result<Option<T>> {
    Ok(if run.file(name).exists() {
        Some(run.read_json(name)?)
    } else {
        None
    })
}

/// The run's column names; a run made before kiln kept them has its class names in
/// `metrics.json` and nothing else.
fn columns_of(run: &RunDir) -> Result<Columns> {
    if let Some(columns) = read_if_there(run, COLUMNS)? {
        return Ok(columns);
    }
    let metrics: serde_json::Value = run.read_json("metrics.json")?;
    let classes = metrics["per_class"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["class"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(Columns {
        features: None,
        targets: vec!["prediction".into()],
        classes,
    })
}

/// The model's outputs (logits, or scaled values) for every input row.
fn model_outputs(
    run: &RunDir,
    spec: &ModelSpec,
    mut inputs: Data,
    path: &std::path::Path,
    device: &kiln::Device,
) -> Result<Vec<Vec<f32>>> {
    Ok(match spec {
        ModelSpec::Mlp(mlp) => {
            check_inputs(&inputs, &[mlp.d_input], path)?;
            let model: Mlp = run.load_model(mlp.init(device))?;
            outputs_of(&model, &inputs, EVAL_BATCH, device)
        }
        ModelSpec::Cnn(cnn) => {
            let shape = [cnn.in_channels, cnn.image_size[0], cnn.image_size[1]];
            check_inputs(&inputs, &shape, path)?;
            inputs.sample_shape = shape.to_vec();
            let model: Cnn = run.load_model(cnn.init(device))?;
            outputs_of(&model, &inputs, EVAL_BATCH, device)
        }
        ModelSpec::Sequence(seq) => {
            let model: SequenceModel = run.load_model(seq.init(device))?;
            inputs.sample_shape = vec![inputs.sample_len() / seq.d_input.max(1), seq.d_input];
            outputs_of(&model, &inputs, EVAL_BATCH, device)
        }
        ModelSpec::Transformer(t) => match t.input {
            TransformerInput::Tokens { .. } => {
                let model = run.load_model(t.tokens(device))?;
                outputs_of(&model, &inputs, EVAL_BATCH, device)
            }
            TransformerInput::Features { d_input } => {
                let model = run.load_model(t.features(device))?;
                inputs.sample_shape = vec![inputs.sample_len() / d_input.max(1), d_input];
                outputs_of(&model, &inputs, EVAL_BATCH, device)
            }
            TransformerInput::MaskedTokens { .. } => {
                unreachable!("`predict` refuses masked-language runs up front")
            }
        },
        ModelSpec::Perceptron(_) => bail!("predict supports the MLP, CNN and sequence models"),
    })
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

/// The predictions file: the input's id column (else `row`, from 1), then for regression one
/// column per target, for classification the class and its probability. A Kaggle
/// digit-recognizer run writes Kaggle's `ImageId,Label`.
fn prediction_table(
    task: Task,
    columns: &Columns,
    ids: Option<IdColumn>,
    outputs: &[Vec<f32>],
    kaggle: bool,
) -> (Vec<String>, Vec<Vec<String>>) {
    let ids = ids.unwrap_or_else(|| IdColumn {
        name: if kaggle { "ImageId" } else { "row" }.into(),
        values: (1..=outputs.len()).map(|i| i.to_string()).collect(),
    });
    let mut header = vec![ids.name];
    match task {
        Task::Regression => header.extend(columns.targets.iter().cloned()),
        Task::Classification if kaggle => header.push("Label".into()),
        Task::Classification => {
            header.push(columns.targets.first().cloned().unwrap_or("class".into()));
            header.push("probability".into());
        }
    }
    let rows = ids
        .values
        .into_iter()
        .zip(outputs)
        .map(|(id, output)| {
            let mut row = vec![id];
            match task {
                Task::Regression => row.extend(output.iter().map(f32::to_string)),
                Task::Classification => {
                    let (class, probability) = most_probable(output);
                    row.push(
                        columns
                            .classes
                            .get(class)
                            .cloned()
                            .unwrap_or_else(|| class.to_string()),
                    );
                    if !kaggle {
                        row.push(format!("{probability:.4}"));
                    }
                }
            }
            row
        })
        .collect();
    (header, rows)
}

/// The most probable class of a row of logits and its probability: the softmax's largest
/// entry, or for a single binary logit `z`, class 1 with `sigmoid(z)` when `z > 0`.
fn most_probable(logits: &[f32]) -> (usize, f64) {
    if let [z] = logits {
        let p = 1.0 / (1.0 + (-f64::from(*z)).exp());
        return if *z > 0.0 { (1, p) } else { (0, 1.0 - p) };
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    let best = (0..logits.len())
        .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
        .unwrap_or(0);
    (best, f64::from(logits[best] - max).exp() / sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_probable_class_has_its_softmax_probability() {
        let (class, p) = most_probable(&[1.0, 3.0, 0.0]);
        let expected = 3f64.exp() / (1f64.exp() + 3f64.exp() + 1.0);
        assert_eq!(class, 1);
        assert!((p - expected).abs() < 1e-9, "{p} vs {expected}");
        let (class, p) = most_probable(&[-2.0]);
        assert_eq!(class, 0);
        assert!((p - (1.0 - 1.0 / (1.0 + 2f64.exp()))).abs() < 1e-9);
    }
}
