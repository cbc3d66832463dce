//! Keras's classic transfer-learning example: a CNN trained on the MNIST digits 0-4, then its
//! convolutions frozen and a new dense head trained on 5-9 from 50 labelled images per class;
//! beside it, LoRA adapters of rank 8 on the loaded CNN's dense layers (Keras 3's
//! `enable_lora`), and the same CNN trained from scratch on those 250 images. Needs
//! `datasets/fetch.sh mnist`.
//!
//! `cargo run --release -p kiln-examples --example mnist_transfer [EPOCHS]`

use std::path::Path;

use kiln::datasets::{Data, LabelSubset, MnistSplit, mnist};
use kiln::prelude::*;
use kiln::train::{LoraConfig, freeze, init_from};

fn classes(data: &Data, spec: &str) -> anyhow::Result<Data> {
    let subset = LabelSubset {
        classes: Some(spec.into()),
        ..Default::default()
    };
    Ok(subset.keep_classes(data)?)
}

fn main() -> anyhow::Result<()> {
    let epochs = std::env::args().nth(1).map_or(Ok(30), |e| e.parse())?;
    let (_, device) = device(None)?;
    let (train, test) = (
        mnist(None, MnistSplit::Train)?,
        mnist(None, MnistSplit::Test)?,
    );
    let config = |epochs| TrainerConfig {
        epochs,
        batch_size: 64,
        ..TrainerConfig::new(Task::Classification)
    };

    // 1. All the labels of the digits 0-4.
    device.seed(42);
    let base = CnnConfig::preset(Preset::Mnist, 5).init(&device);
    let base = Trainer::new(config(3), device.clone())?
        .fit(base, &classes(&train, "0-4")?)?
        .model;
    let weights = std::env::temp_dir().join("kiln-mnist-transfer-base.bpk");
    base.save_file(&weights)?;

    // 2. 50 labelled images of each of 5-9; the test set stays whole.
    let few = LabelSubset {
        per_class: Some(50),
        ..Default::default()
    };
    let train = few.cut_training(&classes(&train, "5-9")?, 1)?;
    let test = classes(&test, "5-9")?;
    let accuracy = |model: &Cnn| {
        evaluate(model, &test, Task::Classification, 256, &device)
            .accuracy
            .unwrap_or_default()
    };

    // 3. The same architecture three times: the convolutions from step 1 and frozen, a new
    //    head; all of step 1's weights under low-rank adapters, only those trained; and
    //    everything from scratch.
    let fresh = || CnnConfig::preset(Preset::Mnist, 5).init(&device);
    let (tuned, report) = init_from(fresh(), Path::new(&weights), &["head".into()])?;
    println!("{report}");
    let frozen = TrainerConfig {
        freeze: vec!["blocks".into()],
        ..config(epochs)
    };
    println!(
        "{}",
        summary(&freeze(tuned.clone(), &frozen.freeze)?, &[1, 28, 28])
    );
    let tuned = Trainer::new(frozen, device.clone())?
        .fit(tuned, &train)?
        .model;
    let (loaded, _) = init_from(fresh(), Path::new(&weights), &[])?;
    let lora = TrainerConfig {
        lora: Some(LoraConfig::new(8)),
        ..config(epochs)
    };
    // The fitted model comes back with the adapters merged: a plain CNN.
    let adapted = Trainer::new(lora, device.clone())?
        .fit(loaded, &train)?
        .model;
    let scratch = Trainer::new(config(epochs), device.clone())?
        .fit(fresh(), &train)?
        .model;
    println!(
        "digits 5-9 from 250 labelled images: frozen convolutions {:.4}, LoRA {:.4}, from \
         scratch {:.4}",
        accuracy(&tuned),
        accuracy(&adapted),
        accuracy(&scratch)
    );
    Ok(())
}
