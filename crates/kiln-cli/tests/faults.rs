//! The fault suite: broken runs on real data, each found with the right kind within the first
//! 30% of its epochs, on two model families or more and two seeds; and healthy configurations
//! (the README's commands with fewer epochs) that give no finding. Unscaled inputs, which the
//! command line cannot make (it standardises every table), are in kiln-train's
//! `tests/diagnosis.rs`. `cargo test --release -p kiln-cli --test faults -- --nocapture`
//! prints the detection table the README shows.

mod common;

use std::path::Path;

use common::{diagnosis, kiln_raw, kinds, scratch};

/// One broken run: the flags that break it and the finding kind that names the fault.
struct Fault {
    fault: &'static str,
    family: &'static str,
    kind: &'static str,
    epochs: usize,
    args: &'static [&'static str],
}

const DEEP_SIGMOID: &[&str] = &[
    "--hidden",
    "64,64,64,64,64,64,64,64,64,64",
    "--activation",
    "sigmoid",
    "--dropout",
    "0",
];

const FAULTS: &[Fault] = &[
    Fault {
        fault: "learning rate far too high (--lr 0.5, Adam)",
        family: "MLP",
        kind: "diverged",
        epochs: 20,
        args: &["--lr", "0.5"],
    },
    Fault {
        fault: "learning rate far too high (--lr 0.5, Adam)",
        family: "CNN",
        kind: "diverged",
        epochs: 20,
        args: &["--model", "cnn", "--lr", "0.5"],
    },
    Fault {
        fault: "learning rate far too low (--lr 1e-7)",
        family: "MLP",
        kind: "lr_too_low",
        epochs: 20,
        args: &["--lr", "1e-7"],
    },
    Fault {
        fault: "learning rate far too low (--lr 1e-7)",
        family: "CNN",
        kind: "lr_too_low",
        epochs: 20,
        args: &["--model", "cnn", "--lr", "1e-7"],
    },
    Fault {
        fault: "deep sigmoid network (ten layers of 64)",
        family: "MLP",
        kind: "vanishing_gradients",
        epochs: 20,
        args: DEEP_SIGMOID,
    },
    Fault {
        fault: "deep sigmoid network (sigmoid blocks, head 64x4)",
        family: "CNN",
        kind: "vanishing_gradients",
        epochs: 20,
        args: &[
            "--model",
            "cnn",
            "--activation",
            "sigmoid",
            "--hidden",
            "64,64,64,64",
        ],
    },
    Fault {
        fault: "dying ReLUs (--lr 0.05 MLP, 0.02 CNN)",
        family: "MLP",
        kind: "dead_units",
        epochs: 20,
        args: &["--lr", "0.05"],
    },
    Fault {
        fault: "dying ReLUs (--lr 0.05 MLP, 0.02 CNN)",
        family: "CNN",
        kind: "dead_units",
        epochs: 20,
        args: &["--model", "cnn", "--lr", "0.02"],
    },
    Fault {
        fault: "saturated sigmoids (--activation sigmoid, --lr 0.05 MLP, 0.03 CNN)",
        family: "MLP",
        kind: "saturated_units",
        epochs: 20,
        args: &["--activation", "sigmoid", "--lr", "0.05"],
    },
    Fault {
        fault: "saturated sigmoids (--activation sigmoid, --lr 0.05 MLP, 0.03 CNN)",
        family: "CNN",
        kind: "saturated_units",
        epochs: 20,
        args: &["--model", "cnn", "--activation", "sigmoid", "--lr", "0.03"],
    },
    Fault {
        fault: "overfitting: a large network, 10% of the data",
        family: "MLP",
        kind: "overfitting",
        epochs: 50,
        args: &[
            "--hidden",
            "512,512",
            "--dropout",
            "0",
            "--validation-split",
            "0.9",
        ],
    },
    Fault {
        fault: "overfitting: a large network, 10% of the data",
        family: "CNN",
        kind: "overfitting",
        epochs: 50,
        args: &[
            "--model",
            "cnn",
            "--validation-split",
            "0.9",
            "--lr",
            "0.003",
        ],
    },
    Fault {
        fault: "exploding gradients: SGD without clipping",
        family: "MLP (house prices, --lr 0.5)",
        kind: "exploding_gradients",
        epochs: 20,
        args: &[
            "--dataset",
            "house-prices",
            "--optimizer",
            "sgd",
            "--lr",
            "0.5",
        ],
    },
    Fault {
        fault: "exploding gradients: SGD without clipping",
        family: "CNN (--lr 0.5, momentum 0.9)",
        kind: "exploding_gradients",
        epochs: 20,
        args: &[
            "--model",
            "cnn",
            "--optimizer",
            "sgd",
            "--lr",
            "0.5",
            "--momentum",
            "0.9",
        ],
    },
    Fault {
        fault: "exploding gradients: SGD without clipping",
        family: "LSTM (airline, --lr 2)",
        kind: "exploding_gradients",
        epochs: 20,
        args: &[
            "--model",
            "lstm",
            "--dataset",
            "airline",
            "--optimizer",
            "sgd",
            "--lr",
            "2",
        ],
    },
];

/// A run's findings as (kind, epoch): from its `diagnosis.json`, or, where a run that blew up
/// in its first epoch left no directory, from the report on its standard error.
fn findings(dir: &Path, stderr: &str) -> Vec<(String, usize)> {
    if dir.join("diagnosis.json").exists() {
        return kinds(&diagnosis(dir))
            .into_iter()
            .map(|(kind, epoch)| (kind, epoch as usize))
            .collect();
    }
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("diagnosis: "))
        .filter_map(|l| {
            let (kind, rest) = l.split_once(" (epoch ")?;
            Some((kind.to_string(), rest.split(')').next()?.parse().ok()?))
        })
        .collect()
}

/// Trains `args` for `epochs` and returns its findings.
fn train(dir: &Path, epochs: usize, seed: u64, args: &[&str]) -> Vec<(String, usize)> {
    let epochs = epochs.to_string();
    let seed = seed.to_string();
    let mut all = vec![
        "train",
        "--epochs",
        &epochs,
        "--seed",
        &seed,
        "--out",
        dir.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let o = kiln_raw(&all);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked"), "{all:?}: {stderr}");
    findings(dir, &stderr)
}

#[test]
fn every_fault_is_found_early_with_its_kind() {
    let dir = scratch("faults");
    let mut missed = Vec::new();
    eprintln!("| broken run | family | found (epoch, seeds 1 and 2) |");
    for (i, fault) in FAULTS.iter().enumerate() {
        let mut epochs = Vec::new();
        for seed in [1, 2] {
            // Early stopping off: the fault has every epoch to show itself.
            let args = [&["--patience", "0"], fault.args].concat();
            let found = train(&dir.join(format!("{i}-{seed}")), fault.epochs, seed, &args);
            let early = fault.epochs.div_ceil(10) * 3;
            match found.iter().find(|(k, _)| k == fault.kind) {
                Some((_, epoch)) if *epoch <= early => epochs.push(epoch.to_string()),
                _ => missed.push(format!(
                    "{} ({}, seed {seed}): expected {} by epoch {early}, found {found:?}",
                    fault.fault, fault.family, fault.kind
                )),
            }
        }
        eprintln!(
            "| {} | {} | {} ({}) of {} |",
            fault.fault,
            fault.family,
            fault.kind,
            epochs.join(", "),
            fault.epochs
        );
    }
    assert!(missed.is_empty(), "{missed:#?}");
}

/// The README's commands (fewer epochs) and common variations, with kiln's default early
/// stopping as a user runs them: nothing to report.
#[test]
fn healthy_configurations_have_no_finding() {
    let dir = scratch("healthy");
    // The README's airline command, for the LSTM and the GRU.
    let airline = |model| {
        [
            "--model",
            model,
            "--dataset",
            "airline",
            "--hidden",
            "32",
            "--batch-size",
            "16",
            "--lr",
            "0.005",
            "--dropout",
            "0",
        ]
    };
    let healthy: [(usize, &[&str]); 16] = [
        (20, &[]),
        (10, &["--model", "cnn"]),
        (40, &["--dataset", "iris"]),
        (30, &["--dataset", "moons"]),
        (40, &["--dataset", "spirals", "--hidden", "64,64"]),
        (30, &["--dataset", "xor"]),
        (30, &["--dataset", "house-prices"]),
        (
            20,
            &["--optimizer", "sgd", "--lr", "0.02", "--momentum", "0.9"],
        ),
        (20, &["--batch-norm"]),
        (20, &["--lr-schedule", "cosine"]),
        (20, &["--activation", "leaky-relu"]),
        (20, &["--activation", "tanh"]),
        (
            10,
            &[
                "--model",
                "cnn",
                "--batch-norm",
                "--activation",
                "leaky-relu",
            ],
        ),
        (40, &airline("lstm")),
        (40, &airline("gru")),
        (20, &["--model", "perceptron", "--dataset", "moons"]),
    ];
    let mut found = Vec::new();
    for (i, (epochs, args)) in healthy.iter().enumerate() {
        let seen = train(&dir.join(i.to_string()), *epochs, 42, args);
        if !seen.is_empty() {
            found.push(format!("{args:?}: {seen:?}"));
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}
