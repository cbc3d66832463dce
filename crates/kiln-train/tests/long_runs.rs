//! The trainer over long runs, as a library: non-finite losses, failing loggers, checkpoints.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use burn::train::logger::MetricLogger;
use burn::train::metric::store::{EpochSummary, MetricsUpdate, Split};
use burn::train::metric::{MetricDefinition, NumericEntry};
use kiln_common::Model;
use kiln_datasets::{Standardizer, digits, split};
use kiln_fnn::{Mlp, MlpConfig};
use kiln_train::{CheckpointDir, Task, TrainError, Trainer, TrainerConfig, Verbosity};

/// An MLP whose output turns to NaN from its `from`-th training call on: a run that diverges
/// at a known point.
#[derive(Module, Debug)]
struct Diverging {
    mlp: Mlp,
    #[module(skip)]
    calls: Arc<AtomicUsize>,
    #[module(skip)]
    from: usize,
}

impl Model for Diverging {
    type Input = Tensor<2>;

    fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        let out = self.mlp.forward(input);
        if out.device().is_autodiff() && self.calls.fetch_add(1, Ordering::Relaxed) + 1 >= self.from
        {
            out.mul_scalar(f32::NAN)
        } else {
            out
        }
    }
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn digits_train() -> kiln_datasets::Data {
    let mut train = split(&digits(), 0.2, 0).unwrap().first;
    let scaler = Standardizer::fit(&train);
    scaler.transform(&mut train).unwrap();
    train
}

fn config(epochs: usize) -> TrainerConfig {
    TrainerConfig {
        epochs,
        batch_size: 64,
        verbosity: Verbosity::Quiet,
        ..TrainerConfig::new(Task::Classification)
    }
}

#[test]
fn a_nan_stops_the_run_naming_epoch_and_batch_and_keeps_the_last_good_epoch() {
    let train = digits_train();
    let device = Device::flex();
    // 1,437 samples, 80% for training, batches of 64: 18 steps an epoch. NaN from the 5th
    // step of epoch 3 on.
    let steps = (train.len() * 4 / 5).div_ceil(64);
    let model = Diverging {
        mlp: MlpConfig::new(64, vec![32], 10).init(&device),
        calls: Arc::default(),
        from: 2 * steps + 5,
    };
    let dir = scratch("nan");
    let err = Trainer::new(config(10), device)
        .unwrap()
        .with_checkpoints(&dir)
        .fit(model, &train)
        .unwrap_err();
    let TrainError::NonFiniteLoss {
        epoch,
        batch,
        loss,
        history,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!((*epoch, *batch), (3, 5), "{err}");
    assert!(loss.is_nan());
    assert_eq!(history.epochs.len(), 2);
    assert!(history.epochs.iter().all(|r| r.train_loss.is_finite()));
    assert_eq!(CheckpointDir::new(&dir).latest().unwrap(), Some(2));
    assert!(err.to_string().contains("lower --lr"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A metric logger that panics once it has seen `after` updates.
struct Failing {
    seen: usize,
    after: usize,
}

impl MetricLogger for Failing {
    fn log(&mut self, _update: MetricsUpdate, _epoch: usize, _split: &Split) {
        self.seen += 1;
        if self.seen > self.after {
            panic!("the tracking server went away");
        }
    }
    fn read_numeric(&mut self, _: &str, _: usize, _: &Split) -> Result<Vec<NumericEntry>, String> {
        Ok(Vec::new())
    }
    fn log_metric_definition(&mut self, _definition: MetricDefinition) {}
    fn log_epoch_summary(&mut self, _summary: EpochSummary) {}
}

#[test]
fn a_logger_failing_mid_run_is_an_error_not_a_hang() {
    let train = digits_train();
    let device = Device::flex();
    let model = MlpConfig::new(64, vec![32], 10).init(&device);
    let start = Instant::now();
    let err = Trainer::new(config(50), device)
        .unwrap()
        .with_metric_logger("tracker", Failing { seen: 0, after: 30 })
        .fit(model, &train)
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(30));
    let text = err.to_string();
    assert!(
        text.contains("metric logger `tracker`") && text.contains("went away"),
        "{text}"
    );
}

#[test]
fn resuming_without_a_checkpoint_is_a_clear_error() {
    let train = digits_train();
    let device = Device::flex();
    let model = MlpConfig::new(64, vec![32], 10).init(&device);
    let dir = scratch("empty");
    let err = Trainer::new(config(2), device)
        .unwrap()
        .with_checkpoints(&dir)
        .resuming()
        .fit(model, &train)
        .unwrap_err();
    assert!(
        err.to_string().contains("no checkpoint to resume from"),
        "{err}"
    );
}

/// A tmpfs of `size` mounted at `path` for the test's length (root only: `None` elsewhere).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(path: &std::path::Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(path).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .stderr(std::process::Stdio::null())
            .status();
        status
            .is_ok_and(|s| s.success())
            .then(|| Self(path.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Fills the file system holding `dir` with 4 KiB files, then frees `free` bytes of them.
fn fill_leaving(dir: &std::path::Path, free: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut files = Vec::new();
    loop {
        let path = dir.join(files.len().to_string());
        if std::fs::write(&path, [7u8; 4096]).is_err() {
            let _ = std::fs::remove_file(&path);
            break;
        }
        files.push(path);
    }
    for path in files.iter().take(free.div_ceil(4096)) {
        std::fs::remove_file(path).unwrap();
    }
}

fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        names.push(path.display().to_string());
        if path.is_dir() {
            names.extend(files_under(&path));
        }
    }
    names
}

/// The disk fills up while epoch 3's checkpoint is written: the run stops with an error naming
/// the file and the full disk, `latest` still names epoch 2's complete checkpoint, no partial
/// or temporary file is left, and once space is freed the run resumes to the same weights as
/// a run that never stopped.
#[test]
fn a_full_disk_keeps_the_last_checkpoint_and_leaves_no_temporary_file() {
    let root = scratch("full-disk");
    let Some(disk) = SmallDisk::mount(&root, "1m") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root: the test must mount its small disk"
        );
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let train = digits_train();
    let device = Device::flex();
    // One set of initial weights, drawn once: Burn draws a parameter lazily, when first used,
    // from the device's generator, which this binary's other tests share from their threads.
    device.seed(5);
    let config_5 = MlpConfig::new(64, vec![32], 10);
    let initial = config_5.init(&device).into_record();
    let fresh = || config_5.init(&device).load_record(initial.clone());
    let checkpoints = disk.0.join("checkpoint");
    let trainer = |epochs: usize| {
        Trainer::new(config(epochs), device.clone())
            .unwrap()
            .with_checkpoints(&checkpoints)
    };
    trainer(2).fit(fresh(), &train).unwrap();
    let epoch_bytes: u64 = std::fs::read_dir(checkpoints.join("epoch-2"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    fill_leaving(&disk.0.join("filler"), epoch_bytes as usize / 2);

    let err = trainer(4).resuming().fit(fresh(), &train).unwrap_err();
    let TrainError::Io { path, source } = &err else {
        panic!("{err}")
    };
    assert_eq!(source.kind(), std::io::ErrorKind::StorageFull, "{err}");
    assert!(path.starts_with(&checkpoints), "{err}");
    let dir = CheckpointDir::new(&checkpoints);
    assert_eq!(dir.latest().unwrap(), Some(2));
    let mut left = files_under(&checkpoints);
    left.sort();
    let expected: Vec<String> = ["epoch-2", "latest"]
        .iter()
        .map(|n| checkpoints.join(n).display().to_string())
        .collect();
    assert_eq!(
        left.iter()
            .filter(|p| !p.contains("epoch-2/"))
            .cloned()
            .collect::<Vec<_>>(),
        expected
    );

    std::fs::remove_dir_all(disk.0.join("filler")).unwrap();
    let resumed = trainer(4).resuming().fit(fresh(), &train).unwrap();
    let whole_dir = scratch("full-disk-whole");
    let whole = Trainer::new(config(4), device.clone())
        .unwrap()
        .with_checkpoints(&whole_dir)
        .fit(fresh(), &train)
        .unwrap();
    let bytes = |m: Mlp| m.into_record().into_bytes().unwrap().to_vec();
    assert!(
        bytes(resumed.model) == bytes(whole.model),
        "the weights differ"
    );
    std::fs::remove_dir_all(whole_dir).unwrap();
}

/// A run that early stopping ended: `resuming` trains nothing more (the run had ended), and
/// `resuming_past_early_stop` with more epochs trains on from its last checkpoint, as Keras's
/// `fit` called again.
#[test]
fn a_run_ended_by_early_stopping_trains_on_only_when_asked() {
    let train = digits_train();
    let device = Device::flex();
    let dir = scratch("train-on");
    let stopping = |epochs: usize| TrainerConfig {
        early_stopping: Some(kiln_train::EarlyStopping {
            patience: 1,
            ..Default::default()
        }),
        ..config(epochs)
    };
    let model = || MlpConfig::new(64, vec![16], 10).init(&device);
    let trainer = |epochs: usize| {
        Trainer::new(stopping(epochs), device.clone())
            .unwrap()
            .with_checkpoints(&dir)
    };
    let first = trainer(200).fit(model(), &train).unwrap();
    assert!(first.stopped_early && first.epochs_run < 200);
    let again = trainer(400).resuming().fit(model(), &train).unwrap();
    assert_eq!(
        again.history, first.history,
        "a plain resume of an ended run trains nothing"
    );
    let on = trainer(400)
        .resuming_past_early_stop()
        .fit(model(), &train)
        .unwrap();
    assert!(on.epochs_run > first.epochs_run, "{} epochs", on.epochs_run);
    assert_eq!(
        on.history.epochs[..first.epochs_run],
        first.history.epochs[..]
    );
    std::fs::remove_dir_all(dir).unwrap();
}
