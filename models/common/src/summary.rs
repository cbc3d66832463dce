//! Keras's `model.summary()`: one row per layer with its output shape and parameter count.

use std::fmt;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Bool, Int, Tensor};

use crate::{BatchInput, Model};

/// One row of a [`Summary`].
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// Where the layer sits in the model, as its weights are named (`hidden.0.linear`).
    pub name: String,
    /// What it is (`Linear`, `Conv2d 3x3`, `MaxPool2d 2x2`, ...).
    pub kind: String,
    /// Its output for one sample: the batch dimension left out, as Keras shows `None`.
    pub output: Vec<usize>,
    /// Its parameter count.
    pub params: usize,
}

impl Layer {
    /// A row for `module`, whose output for a one-sample batch is `output`.
    pub fn new<M: Module, const D: usize>(
        name: impl Into<String>,
        kind: impl Into<String>,
        module: &M,
        output: &Tensor<D>,
    ) -> Self {
        Self::shaped(
            name,
            kind,
            Module::num_params(module),
            output.dims()[1..].to_vec(),
        )
    }

    /// A row with its parts given.
    pub fn shaped(
        name: impl Into<String>,
        kind: impl Into<String>,
        params: usize,
        output: Vec<usize>,
    ) -> Self {
        Self {
            name: name.into(),
            kind: kind.into(),
            output,
            params,
        }
    }

    /// Prefixes the row's name with `prefix.`: rows of a block inside a model.
    pub fn within(mut self, prefix: &str) -> Self {
        self.name = format!("{prefix}.{}", self.name);
        self
    }
}

/// A model's layers and parameter counts, as Keras's `model.summary()` prints them.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The model's name.
    pub model: String,
    /// One sample's shape.
    pub input: Vec<usize>,
    /// One row per layer.
    pub layers: Vec<Layer>,
    /// Every parameter of the model (counted from the model itself, not the rows).
    pub total: usize,
    /// Those the optimiser updates.
    pub trainable: usize,
    /// The weights' size in memory.
    pub bytes: usize,
}

/// The [`Summary`] of `model` for samples of `input_shape` (without the batch dimension).
///
/// The rows come from [`Model::layers`]; a model that lists none gets one row for the whole
/// model. The totals are counted from the model's parameters themselves.
pub fn summary<M: Model>(model: &M, input_shape: &[usize]) -> Summary {
    let mut layers = model.layers(input_shape);
    if layers.is_empty() {
        let device = model.devices().into_iter().next().unwrap_or_default();
        let len: usize = input_shape.iter().product();
        let input = M::Input::from_samples(vec![0.0; len], 1, input_shape, &device);
        let output = model.valid().forward(input);
        layers.push(Layer::new("model", "Model", model, &output));
    }
    // A parameter's gradient requirement shows on an autodiff device only: count on the
    // model in training mode, where the frozen ones stay detached.
    let mut counter = Counter::default();
    model.clone().train().visit(&mut counter);
    Summary {
        model: model_name(std::any::type_name::<M>()),
        input: input_shape.to_vec(),
        layers,
        total: Module::num_params(model),
        trainable: counter.trainable,
        bytes: counter.bytes,
    }
}

#[derive(Default)]
struct Counter {
    trainable: usize,
    bytes: usize,
}

impl ModuleVisitor for Counter {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let n = param.shape().num_elements();
        if param.is_require_grad() {
            self.trainable += n;
        }
        self.bytes += n * param.val().dtype().size();
    }

    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<D, Int>>) {
        self.bytes += param.shape().num_elements() * param.val().dtype().size();
    }

    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<D, Bool>>) {
        self.bytes += param.shape().num_elements();
    }
}

/// A count with thousands separators: `1234567` as `1,234,567`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn shape(dims: &[usize]) -> String {
    let dims: Vec<String> = std::iter::once("None".to_string())
        .chain(dims.iter().map(|d| d.to_string()))
        .collect();
    format!("({})", dims.join(", "))
}

fn bytes(n: usize) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.2} MB", n as f64 / (1 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.2} KB", n as f64 / (1 << 10) as f64),
        n => format!("{n} B"),
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = ["Layer (type)", "Output Shape", "Param #"];
        let cells: Vec<[String; 3]> = self
            .layers
            .iter()
            .map(|l| {
                [
                    format!("{} ({})", l.name, l.kind),
                    shape(&l.output),
                    thousands(l.params),
                ]
            })
            .collect();
        let width = |i: usize| {
            cells
                .iter()
                .map(|c| c[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        };
        let (w0, w1, w2) = (width(0), width(1), width(2));
        let rule = |c: char| c.to_string().repeat(w0 + w1 + w2 + 6);
        writeln!(
            f,
            "Model: \"{}\" (input {})",
            self.model,
            shape(&self.input)
        )?;
        writeln!(f, "{}", rule('='))?;
        writeln!(
            f,
            "{:<w0$}   {:<w1$}   {:>w2$}",
            header[0], header[1], header[2]
        )?;
        writeln!(f, "{}", rule('='))?;
        for c in &cells {
            writeln!(f, "{:<w0$}   {:<w1$}   {:>w2$}", c[0], c[1], c[2])?;
        }
        writeln!(f, "{}", rule('='))?;
        writeln!(
            f,
            "Total params: {} ({})",
            thousands(self.total),
            bytes(self.bytes)
        )?;
        writeln!(f, "Trainable params: {}", thousands(self.trainable))?;
        writeln!(
            f,
            "Non-trainable params: {}",
            thousands(self.total - self.trainable.min(self.total))
        )
    }
}

/// A type's name as a summary's title: its last path segment, without generic arguments
/// (`kiln_transformer::SequenceClassifier<kiln_transformer::Tokens>` is `SequenceClassifier`).
fn model_name(type_name: &str) -> String {
    let plain = type_name.split('<').next().unwrap_or(type_name);
    plain.rsplit("::").next().unwrap_or("Model").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_like_keras() {
        assert_eq!(thousands(109_386), "109,386");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(shape(&[32, 13, 13]), "(None, 32, 13, 13)");
        assert_eq!(bytes(437_544), "427.29 KB");
    }

    #[test]
    fn a_generic_models_title_is_its_name() {
        assert_eq!(
            model_name("kiln_transformer::SequenceClassifier<kiln_transformer::Tokens>"),
            "SequenceClassifier"
        );
        assert_eq!(model_name("kiln_fnn::mlp::Mlp"), "Mlp");
    }
}
