//! The perceptron learns AND and OR, and cannot learn XOR; a two-layer MLP then solves XOR.
//!
//! `cargo run --release -p kiln-examples --example perceptron`

use kiln::burn::tensor::{Int, Tensor};
use kiln::datasets::{split, synthetic};
use kiln::prelude::*;
use kiln::train::Verbosity;

fn main() -> anyhow::Result<()> {
    let (_, device) = device(None)?;
    let x = Tensor::<2>::from_floats([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], &device);

    for (name, targets) in [
        ("AND", [0, 0, 0, 1]),
        ("OR", [0, 1, 1, 1]),
        ("XOR", [0, 1, 1, 0]),
    ] {
        let mut perceptron = PerceptronConfig::new(2).init(&device);
        let fit = perceptron.fit(
            x.clone(),
            Tensor::<1, Int>::from_ints(targets, &device),
            100,
        );
        let outputs: Vec<f32> = perceptron
            .forward(x.clone())
            .into_data()
            .iter::<f32>()
            .collect();
        println!(
            "perceptron on {name}: {} after {} epochs, outputs {outputs:?} (targets {targets:?})",
            if fit.converged {
                "converged"
            } else {
                "did NOT converge"
            },
            fit.epochs
        );
    }

    // XOR needs a hidden layer: 2 -> 8 -> 2 with tanh, trained by backpropagation.
    let data = synthetic::xor(400, 0.1, 1);
    let parts = split(&data, 0.25, 1)?;
    device.seed(1);
    let mlp = MlpConfig::new(2, vec![8], 2)
        .with_activation(Activation::Tanh)
        .init(&device);
    let config = TrainerConfig {
        epochs: 100,
        lr: 0.05,
        verbosity: Verbosity::Quiet,
        ..TrainerConfig::new(Task::Classification)
    };
    let fit = Trainer::new(config, device.clone())?.fit(mlp, &parts.first)?;
    let test = evaluate(&fit.model, &parts.second, Task::Classification, 64, &device);
    println!(
        "MLP 2-8-2 on noisy XOR: test accuracy {:.3} after {} epochs",
        test.accuracy.unwrap_or_default(),
        fit.epochs_run
    );
    Ok(())
}
