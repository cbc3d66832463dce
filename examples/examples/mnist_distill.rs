//! Knowledge distillation (Hinton et al., 2015; Keras's `Distiller` example): the `mnist` CNN
//! teaches a small MLP, against the same MLP trained on the labels alone. Needs
//! `datasets/fetch.sh mnist`.
//!
//! `cargo run --release -p kiln-examples --example mnist_distill [EPOCHS]`

use kiln::datasets::{MnistSplit, mnist};
use kiln::prelude::*;
use kiln::train::Distillation;

fn main() -> anyhow::Result<()> {
    let epochs = std::env::args().nth(1).map_or(Ok(10), |e| e.parse())?;
    let (_, device) = device(None)?;
    let (train, test) = (
        mnist(None, MnistSplit::Train)?,
        mnist(None, MnistSplit::Test)?,
    );
    let config = |epochs| TrainerConfig {
        epochs,
        ..TrainerConfig::new(Task::Classification)
    };

    // 1. The teacher: a CNN of 225,034 parameters.
    device.seed(42);
    let cnn = CnnConfig::preset(Preset::Mnist, 10).init(&device);
    let teacher = Trainer::new(config(4), device.clone())?
        .fit(cnn, &train)?
        .model;
    let taught = evaluate(&teacher, &test, Task::Classification, 256, &device);

    // 2. The student, an MLP of 25,450 parameters, twice from the same initial weights: on the
    //    labels alone, and on the labels mixed with the teacher's softened probabilities.
    let student = || {
        device.seed(1);
        MlpConfig::new(784, vec![32], 10).init(&device)
    };
    let alone = Trainer::new(config(epochs), device.clone())?
        .fit(student(), &train)?
        .model;
    let distilled = TrainerConfig {
        distillation: Some(Distillation {
            temperature: 3.0,
            alpha: 0.1,
        }),
        ..config(epochs)
    };
    let distilled = Trainer::new(distilled, device.clone())?
        .with_teacher(teacher)
        .fit(student(), &train)?
        .model;
    let accuracy = |model: &Mlp| {
        evaluate(model, &test, Task::Classification, 256, &device)
            .accuracy
            .unwrap_or_default()
    };
    println!(
        "teacher (CNN) {:.4}; student (MLP 784-32-10) alone {:.4}, distilled {:.4}",
        taught.accuracy.unwrap_or_default(),
        accuracy(&alone),
        accuracy(&distilled),
    );
    Ok(())
}
