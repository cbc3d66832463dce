//! `TrainerConfig::precision`: a bf16 run of a model with fused layers (an LSTM over the digits'
//! rows) trains and leaves the process in f32; one whose products are all Burn's own (a user's
//! model of Burn's `Linear`) fails rather than claim bf16. A test binary of its own: the
//! precision is process-wide.

mod common;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use common::digits_split;
use kiln_datasets::Data;
use kiln_lstm::{Cell, SequenceModelConfig};
use kiln_train::{Precision, Task, Trainer, TrainerConfig, Verbosity};

/// A user's model of Burn's own layer: nothing in it runs in kiln's fused kernels.
#[derive(Module, Debug)]
struct BurnsOwn {
    linear: Linear,
}

impl kiln_common::Model for BurnsOwn {
    type Input = Tensor<2>;

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.linear.forward(x)
    }
}

/// The digits as 8 steps of 8 pixels.
fn rows(data: Data) -> Data {
    Data::new(data.x, vec![8, 8], data.y).unwrap()
}

fn bf16(epochs: usize) -> TrainerConfig {
    TrainerConfig {
        epochs,
        verbosity: Verbosity::Quiet,
        precision: Precision::Bf16,
        ..TrainerConfig::new(Task::Classification)
    }
}

#[test]
fn a_bf16_run_trains_its_fused_layers_in_bf16_and_a_run_without_them_fails() {
    let (train, _) = digits_split();
    let device = Device::flex();
    device.seed(5);
    let lstm = SequenceModelConfig::new(8, 64, 10)
        .with_cell(Cell::Lstm)
        .init(&device);
    let before = kiln_common::precision::low_precision_products();
    let fit = Trainer::new(bf16(6), device.clone())
        .unwrap()
        .fit(lstm, &rows(train.clone()))
        .unwrap();
    let accuracy = fit.history.epochs.last().unwrap().val_accuracy.unwrap();
    assert!(accuracy > 0.85, "an LSTM over the digits' rows: {accuracy}");
    assert!(kiln_common::precision::low_precision_products() > before);
    assert_eq!(
        kiln_common::precision(),
        Precision::F32,
        "restored after the run"
    );

    let plain = BurnsOwn {
        linear: LinearConfig::new(64, 10).init(&device),
    };
    let error = Trainer::new(bf16(1), device)
        .unwrap()
        .fit(plain, &train)
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("bf16 was asked, but no product of this model ran in it"),
        "{error}"
    );
    assert_eq!(kiln_common::precision(), Precision::F32);
}

#[test]
fn f16_on_a_cpu_backend_is_refused_by_name() {
    let config = TrainerConfig {
        precision: Precision::F16,
        ..bf16(1)
    };
    let error = Trainer::new(config, Device::flex())
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("f16 is for the GPU backends (wgpu: `--device wgpu`), and")
            && error.contains("train it in bf16"),
        "{error}"
    );
}
