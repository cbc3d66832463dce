//! Your own images from a folder (Keras's `image_dataset_from_directory`): one sub-folder per
//! class, read from disk as batches need them, a CNN whose head does not fix the image size
//! (global average pooling), and predictions for new files. Without a folder, it writes 2,000
//! MNIST digits as PNG files into one first (needs `datasets/fetch.sh mnist`).
//!
//! `cargo run --release -p kiln-examples --example image_folder [DIR]`

use std::path::PathBuf;

use kiln::datasets::{ImageOptions, MnistSplit, image_folder, image_inputs, mnist, split};
use kiln::prelude::*;

fn main() -> anyhow::Result<()> {
    let dir = match std::env::args().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => write_digits(2_000)?,
    };
    let (_, device) = device(None)?;
    // Every image resized to 32x32 and read as RGB, whatever it was.
    let options = ImageOptions {
        size: Some([32, 32]),
        channels: Some(3),
        ..Default::default()
    };
    let set = image_folder(&dir, &options)?;
    println!(
        "{} images of {} classes, skipped {} other files",
        set.data.len(),
        set.data.y.width(),
        set.skipped.len()
    );
    let parts = split(&set.data, 0.2, 42)?;
    let (train, test) = (parts.first, parts.second);

    // The cifar preset's blocks on 3x32x32, averaged per channel before the head.
    let config = CnnConfig {
        global_pool: true,
        ..CnnConfig::preset(Preset::Cifar, set.data.y.width())
    };
    device.seed(42);
    let config_train = TrainerConfig {
        epochs: 8,
        ..TrainerConfig::new(Task::Classification)
    };
    let fit = Trainer::new(config_train, device.clone())?.fit(config.init(&device), &train)?;
    let metrics = evaluate(&fit.model, &test, Task::Classification, 256, &device);
    println!("test accuracy {:.4}", metrics.accuracy.unwrap_or_default());

    // New files: a folder (or one file), resized and converted as the training images were.
    let first_class = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .min()
        .expect("a class folder");
    let new = image_inputs(&first_class, [3, 32, 32])?;
    let outputs = predict(&fit.model, &new, 256, &device);
    let paths = &new.files.as_ref().expect("read from files").paths;
    for (path, logits) in paths.iter().zip(&outputs).take(3) {
        let class = (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap_or(0);
        println!("{}: class {class}", path.display());
    }
    Ok(())
}

/// The first `count` MNIST training digits as `DIR/<digit>/NNNNN.png`, in a temporary folder.
fn write_digits(count: usize) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join("kiln-example-image-folder");
    let train = mnist(None, MnistSplit::Train)?;
    let labels = train.y.labels().expect("classes");
    for (i, &label) in labels.iter().enumerate().take(count) {
        let pixels = train.sample(i).iter().map(|&v| (v * 255.0).round() as u8);
        let digit = image::GrayImage::from_raw(28, 28, pixels.collect()).expect("28x28 pixels");
        let folder = dir.join(label.to_string());
        std::fs::create_dir_all(&folder)?;
        digit.save(folder.join(format!("{i:05}.png")))?;
    }
    Ok(dir)
}
