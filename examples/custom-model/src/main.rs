//! A model of your own from kiln's blocks, trained by kiln's trainer: the 8x8 digits read by
//! a convolution, then row by row by an LSTM, the rows mixed by self-attention, and classified
//! by a dense head.
//!
//! `cargo run --release` (in this directory; `--no-default-features --features wgpu` for
//! the GPU).

/// The README's example of a model of one's own, kept compiling and checked against the README.
#[cfg(test)]
mod readme;

// The one line a crate needs for Burn's derives: `#[derive(Module)]` and `#[derive(Config)]`
// write paths starting with `burn::`, and this makes them kiln's own Burn (the exact version
// and backends kiln was built with) without a `burn` dependency of your own.
use kiln::burn;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use kiln::cnn::{ConvBlock, ConvBlockConfig, Padding};
use kiln::common::{Layer, Model, summary};
use kiln::datasets::{digit_images, split};
use kiln::fnn::{Mlp, MlpConfig};
use kiln::lstm::{Lstm, LstmConfig};
use kiln::train::{EarlyStopping, RunDir, Task, Trainer, TrainerConfig, evaluate};
use kiln::transformer::{EncoderBlock, EncoderBlockConfig};

/// Reads an image as a sequence of rows.
#[derive(Module, Debug)]
pub struct RowReader {
    /// 3x3 features of the image, its size kept.
    conv: ConvBlock,
    /// Each row of feature maps is one step.
    rows: Lstm,
    /// Every row attends to every other.
    mixer: EncoderBlock,
    /// Mean over the rows to the classes.
    head: Mlp,
}

/// The sizes of a [`RowReader`].
#[derive(burn::config::Config, Debug)]
pub struct RowReaderConfig {
    /// Image side (square, one channel).
    pub side: usize,
    /// Feature maps of the convolution. Default: 8.
    #[config(default = 8)]
    pub channels: usize,
    /// LSTM state and attention width. Default: 32.
    #[config(default = 32)]
    pub d_model: usize,
    pub classes: usize,
}

impl RowReaderConfig {
    pub fn init(&self, device: &Device) -> RowReader {
        RowReader {
            conv: ConvBlockConfig::new([1, self.channels])
                .with_padding(Padding::Same)
                .init(device),
            rows: LstmConfig::new(self.channels * self.side, self.d_model).init(device),
            mixer: EncoderBlockConfig::new(self.d_model, 4, 2 * self.d_model).init(device),
            head: MlpConfig::new(self.d_model, vec![], self.classes).init(device),
        }
    }
}

impl RowReader {
    /// The stages' outputs, in order: convolution, LSTM, attention, head.
    ///
    /// # Shapes
    /// - images: `[batch, 1, side, side]`
    /// - output: `[batch, classes]`
    fn stages(&self, images: Tensor<4>) -> (Tensor<4>, Tensor<3>, Tensor<3>, Tensor<2>) {
        let features = self.conv.forward(images);
        let [batch, channels, height, width] = features.dims();
        // [batch, channels, rows, width] -> [batch, rows, channels * width]: a row per step.
        let steps = features
            .clone()
            .swap_dims(1, 2)
            .reshape([batch, height, channels * width]);
        let (rows, _state) = self.rows.forward(steps, None);
        let mixed = self.mixer.forward(rows.clone(), None);
        let logits = self.head.forward(mixed.clone().mean_dim(1).squeeze_dim(1));
        (features, rows, mixed, logits)
    }
}

impl Model for RowReader {
    type Input = Tensor<4>;

    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.stages(images).3
    }

    /// The rows of the model's summary.
    fn layers(&self, sample_shape: &[usize]) -> Vec<Layer> {
        let device = self.head.output.weight.device();
        let mut shape = [1; 4];
        shape[1..].copy_from_slice(sample_shape);
        let (features, rows, mixed, logits) = self.valid().stages(Tensor::zeros(shape, &device));
        vec![
            Layer::new("conv", "ConvBlock 3x3", &self.conv, &features),
            Layer::new("rows", "Lstm", &self.rows, &rows),
            Layer::new("mixer", "EncoderBlock", &self.mixer, &mixed),
            Layer::new("head", "Mlp", &self.head, &logits),
        ]
    }
}

fn main() -> anyhow::Result<()> {
    let (backend, device) = kiln::backend::device(None)?;
    let parts = split(&digit_images(), 0.2, 0)?;
    let (train, test) = (parts.first, parts.second);

    device.seed(42);
    let config = RowReaderConfig::new(8, 10);
    let model = config.init(&device);
    println!("{}", summary(&model, &[1, 8, 8]));

    let trainer = TrainerConfig {
        epochs: 30,
        lr: 3e-3,
        early_stopping: Some(EarlyStopping {
            patience: 5,
            ..Default::default()
        }),
        ..TrainerConfig::new(Task::Classification)
    };
    let fit = Trainer::new(trainer, device.clone())?.fit(model, &train)?;
    let metrics = evaluate(&fit.model, &test, Task::Classification, 256, &device);
    let accuracy = metrics.accuracy.unwrap_or_default();
    println!(
        "backend {backend}: {} epochs (best {}), test accuracy {accuracy:.4}",
        fit.epochs_run, fit.best_epoch
    );

    anyhow::ensure!(accuracy >= 0.9, "test accuracy {accuracy:.4} is below 0.9");

    // Save the weights, load them into a fresh model, and check that it predicts the same.
    let run = RunDir::create(std::env::temp_dir().join("kiln-custom-model"))?;
    run.save_model(fit.model.clone())?;
    let reloaded = run.load_model(config.init(&device))?;
    let again = evaluate(&reloaded, &test, Task::Classification, 256, &device);
    println!(
        "reloaded from {}: test accuracy {:.4}",
        run.file(RunDir::MODEL).display(),
        again.accuracy.unwrap_or_default()
    );
    anyhow::ensure!(
        again.accuracy == metrics.accuracy,
        "the reloaded model predicts differently"
    );
    Ok(())
}
