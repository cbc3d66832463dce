//! A run resumed on a machine with another core count ends with the same bytes: a CNN on the
//! digits (the fused convolution, whose weight gradient is a sum over parallel tasks) trained
//! for two epochs under one thread count, resumed for two more under another, against the
//! same four epochs in one go under a third. Each part runs in a child process of this test
//! binary (rayon's thread count is fixed once per process, by `RAYON_NUM_THREADS`).

use std::path::Path;
use std::process::Command;

use burn::module::Module;
use burn::tensor::Device;
use kiln_cnn::{CnnConfig, ConvBlockConfig, Padding, Pool};
use kiln_datasets::{Data, digits, split};
use kiln_train::{Task, Trainer, TrainerConfig, Verbosity};

/// The child's part: trains (or resumes) under `KILN_TEST_DIR`, to `KILN_TEST_EPOCHS` epochs,
/// and writes the weights and the history there. Run by the test below, not on its own.
#[test]
#[ignore = "a child process of the_same_run_on_any_core_count_resumes_to_the_same_bytes"]
fn child_trains_a_cnn() {
    let dir = std::env::var("KILN_TEST_DIR").expect("KILN_TEST_DIR");
    let dir = Path::new(&dir);
    let epochs: usize = std::env::var("KILN_TEST_EPOCHS").unwrap().parse().unwrap();
    let parts = split(&digits(), 0.2, 0).unwrap();
    let mut train = parts.first;
    train.x.iter_mut().for_each(|v| *v /= 16.0);
    let train = Data::new(train.x, vec![1, 8, 8], train.y).unwrap();
    let device = Device::flex();
    device.seed(3);
    let model = CnnConfig::new(
        1,
        [8, 8],
        vec![
            ConvBlockConfig::new([1, 8])
                .with_padding(Padding::Same)
                .with_pool(Some(Pool::Max)),
            ConvBlockConfig::new([8, 16]).with_padding(Padding::Same),
        ],
        vec![32],
        10,
    )
    .init(&device);
    let config = TrainerConfig {
        epochs,
        batch_size: 64,
        verbosity: Verbosity::Quiet,
        ..TrainerConfig::new(Task::Classification)
    };
    let mut trainer = Trainer::new(config, device)
        .unwrap()
        .with_checkpoints(dir.join("checkpoint"));
    if std::env::var("KILN_TEST_RESUME").is_ok() {
        trainer = trainer.resuming();
    }
    let fit = trainer.fit(model, &train).unwrap();
    let weights = fit.model.into_record().into_bytes().unwrap();
    std::fs::write(dir.join("model.bpk"), &*weights).unwrap();
    let losses: Vec<String> = fit
        .history
        .epochs
        .iter()
        .map(|e| format!("{} {}", e.train_loss, e.val_loss))
        .collect();
    std::fs::write(dir.join("losses.txt"), losses.join("\n")).unwrap();
}

fn child(dir: &Path, threads: usize, epochs: usize, resume: bool) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "child_trains_a_cnn",
            "--ignored",
            "--test-threads=1",
        ])
        .env("KILN_TEST_DIR", dir)
        .env("KILN_TEST_EPOCHS", epochs.to_string())
        .env("RAYON_NUM_THREADS", threads.to_string());
    if resume {
        command.env("KILN_TEST_RESUME", "1");
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{threads} threads: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_same_run_on_any_core_count_resumes_to_the_same_bytes() {
    let root = std::env::temp_dir().join(format!("kiln-core-count-{}", std::process::id()));
    let (whole, halves) = (root.join("whole"), root.join("halves"));
    for dir in [&whole, &halves] {
        std::fs::create_dir_all(dir).unwrap();
    }
    child(&whole, 2, 4, false);
    child(&halves, 1, 2, false);
    child(&halves, 3, 4, true);
    let read = |dir: &Path, name: &str| std::fs::read(dir.join(name)).unwrap();
    assert_eq!(
        String::from_utf8(read(&halves, "losses.txt")).unwrap(),
        String::from_utf8(read(&whole, "losses.txt")).unwrap()
    );
    assert!(
        read(&halves, "model.bpk") == read(&whole, "model.bpk"),
        "the weights differ"
    );
    std::fs::remove_dir_all(root).unwrap();
}
