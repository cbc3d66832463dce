//! Every run writes TensorBoard event files, checked against the real thing: TensorBoard's own
//! `EventAccumulator` (the `tensorboard` package, in the virtual environment `.ci/run` makes and
//! names in `KILN_TENSORBOARD_PYTHON`) must read every scalar equal to `history.csv` and each
//! weight histogram's count and sum equal to the run's weights; every record's masked CRC-32C
//! is checked here too, since TensorBoard's reader stops silently at a bad one.

mod common;

use std::path::Path;
use std::process::Command;

use common::{kiln, scratch};
use kiln::burn::module::{Module, ModuleVisitor, Param};
use kiln::burn::tensor::Tensor;
use kiln::fnn::{Mlp, MlpConfig};
use kiln::train::{History, RunDir, read_records};

/// TensorBoard's reading of `dir`, or `None` where no TensorBoard is installed (CI has one).
fn read_with_tensorboard(dir: &Path) -> Option<serde_json::Value> {
    let Some(python) = std::env::var_os("KILN_TENSORBOARD_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI sets KILN_TENSORBOARD_PYTHON: the test must run against the real TensorBoard"
        );
        eprintln!("skipped: KILN_TENSORBOARD_PYTHON names no Python with tensorboard");
        return None;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/read_tensorboard.py");
    let o = Command::new(python).arg(script).arg(dir).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Some(serde_json::from_slice(&o.stdout).unwrap())
}

/// Every parameter tensor's (path, count, sum).
#[derive(Default)]
struct Sums {
    path: Vec<String>,
    sums: Vec<(String, f64, f64)>,
}

impl ModuleVisitor for Sums {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.into());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let values: Vec<f32> = param.val().into_data().try_to_vec().unwrap();
        let sum = values.iter().map(|&v| v as f64).sum();
        self.sums
            .push((self.path.join("."), values.len() as f64, sum));
    }
}

#[test]
fn tensorboard_reads_every_scalar_and_histogram_of_a_run() {
    let dir = scratch("tensorboard");
    let run = dir.join("run");
    kiln(&[
        "train",
        "--quiet",
        "--epochs",
        "3",
        "--patience",
        "0",
        "--hidden",
        "32",
        "--out",
        run.to_str().unwrap(),
    ]);
    let events = run.join("tensorboard");
    let files: Vec<_> = std::fs::read_dir(&events).unwrap().flatten().collect();
    assert_eq!(files.len(), 1);
    // Every record's two CRCs: the file version, then one event per epoch.
    let records = read_records(&std::fs::read(files[0].path()).unwrap()).unwrap();
    assert_eq!(records.len(), 4);

    let Some(tb) = read_with_tensorboard(&events) else {
        return;
    };
    let history =
        History::from_csv(&std::fs::read_to_string(run.join("history.csv")).unwrap()).unwrap();
    let series = |tag: &str| -> Vec<(u64, f64)> {
        tb["scalars"][tag]
            .as_array()
            .unwrap_or_else(|| panic!("no {tag} in {}", tb["scalars"]))
            .iter()
            .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap()))
            .collect()
    };
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs().max(1e-6);
    for (tag, field) in [
        (
            "loss/train",
            (|e| Some(e.train_loss)) as fn(&kiln::train::EpochRecord) -> Option<f64>,
        ),
        ("loss/validation", |e| Some(e.val_loss)),
        ("accuracy/train", |e| e.train_accuracy),
        ("accuracy/validation", |e| e.val_accuracy),
        ("learning_rate", |e| Some(e.lr)),
    ] {
        let got = series(tag);
        assert_eq!(got.len(), 3, "{tag}");
        for ((step, value), e) in got.iter().zip(&history.epochs) {
            // TensorBoard keeps scalars as f32.
            assert_eq!(*step as usize, e.epoch);
            assert!(
                close(*value, field(e).unwrap() as f32 as f64),
                "{tag} {step}: {value} vs {e:?}"
            );
        }
    }
    assert_eq!(series("gradient_norm/hidden.0.linear.weight").len(), 3);

    // The last epoch's weight histograms: the run's final weights (no early stopping).
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    let mlp: MlpConfig = serde_json::from_value(config["model"]["mlp"].clone()).unwrap();
    let device = kiln::Device::flex();
    let model: Mlp = RunDir::open(&run)
        .unwrap()
        .load_model(mlp.init(&device))
        .unwrap();
    let mut sums = Sums::default();
    model.visit(&mut sums);
    assert_eq!(
        sums.sums.len(),
        4,
        "hidden.0.linear and output, weights and biases"
    );
    for (name, count, sum) in &sums.sums {
        let hist = tb["histograms"][format!("weights/{name}")]
            .as_array()
            .unwrap_or_else(|| panic!("no weights/{name}"));
        assert_eq!(hist.len(), 3, "{name}");
        let last = &hist[2];
        assert_eq!(last[0], 3);
        assert_eq!(last[1].as_f64().unwrap(), *count, "{name}");
        assert!(
            (last[2].as_f64().unwrap() - sum).abs() < 1e-3,
            "{name}: {last} vs {sum}"
        );
        let grads = tb["histograms"][format!("gradients/{name}")]
            .as_array()
            .unwrap();
        assert_eq!(grads[2][1].as_f64().unwrap(), *count, "{name}");
    }
}
