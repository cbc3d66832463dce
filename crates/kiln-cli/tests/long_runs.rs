//! A run a user can trust: killed and resumed to the same bytes, never hung by a closed pipe,
//! stopped at the first non-finite loss, checkpoints that refuse to be misread.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{history_without_seconds, kiln, kiln_raw, scratch};

/// A digits MLP wide enough that an epoch lasts long enough to be killed in the middle of
/// (about a second here), with early stopping and restore-best on, so that their state has
/// to survive the kill too.
const RUN: [&str; 12] = [
    "train",
    "--quiet",
    "--hidden",
    "1024,1024",
    "--batch-size",
    "4",
    "--epochs",
    "6",
    "--patience",
    "2",
    "--lr-schedule",
    "cosine",
];

fn train_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = RUN.to_vec();
    args.extend_from_slice(&["--out", out]);
    args.extend_from_slice(extra);
    args
}

fn latest_epoch(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("checkpoint/latest"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// Starts a run and SIGKILLs it in the middle of the epoch after checkpoint `after`.
fn kill_after(out: &Path, after: usize) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(train_args(out.to_str().unwrap(), &[]))
        .env_remove("BURN_DEVICE")
        .spawn()
        .unwrap();
    let start = Instant::now();
    while latest_epoch(out) < after {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before epoch {after}"
        );
        assert!(start.elapsed() < Duration::from_secs(300), "no checkpoint");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Into the next epoch, which is not checkpointed yet.
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        latest_epoch(out),
        after,
        "the kill came after the next checkpoint: make the epochs longer"
    );
}

/// The records of every TensorBoard event file of a run, each checked whole (both CRCs).
fn tensorboard_records(run: &Path) -> usize {
    std::fs::read_dir(run.join("tensorboard"))
        .unwrap()
        .flatten()
        .map(|f| {
            let bytes = std::fs::read(f.path()).unwrap();
            kiln::train::read_records(&bytes)
                .unwrap_or_else(|e| panic!("{}: {e}", f.path().display()))
                .len()
        })
        .sum()
}

#[test]
fn a_killed_run_resumed_ends_with_the_same_history_and_weights() {
    let whole = scratch("resume-whole");
    let w = whole.to_str().unwrap().to_string();
    kiln(&train_args(&w, &[]));

    // Killed during epoch 3, resumed; then killed twice more and resumed twice in a row.
    let once = scratch("resume-once");
    kill_after(&once, 2);
    // Killed: its history so far is on disk (written every epoch), with its curves.
    let history = std::fs::read_to_string(once.join("history.csv")).unwrap();
    assert!(history.lines().count() >= 3, "{history}");
    assert!(once.join("history.png").is_file());
    // Its TensorBoard file ends at a record boundary: every record whole, one per epoch done.
    let events = tensorboard_records(&once);
    assert_eq!(
        events,
        history.lines().count(),
        "the file version, then the epochs"
    );
    // eval and predict name it as unfinished and say how to continue it.
    for args in [
        vec!["eval", "--run", once.to_str().unwrap()],
        vec![
            "predict",
            "--run",
            once.to_str().unwrap(),
            "--input",
            "x.csv",
        ],
    ] {
        let o = kiln_raw(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success()
                && err.contains("an unfinished run")
                && err.contains("stopped after epoch 2")
                && err.contains(&format!("kiln train --resume {}", once.display())),
            "{args:?}: {err}"
        );
    }
    kiln(&["train", "--quiet", "--resume", once.to_str().unwrap()]);

    let twice = scratch("resume-twice");
    kill_after(&twice, 1);
    let t = twice.to_str().unwrap().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["train", "--quiet", "--resume", &t])
        .env_remove("BURN_DEVICE")
        .spawn()
        .unwrap();
    let start = Instant::now();
    while latest_epoch(&twice) < 3 && start.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    kiln(&["train", "--quiet", "--resume", &t]);

    let expected = history_without_seconds(&whole);
    let weights = std::fs::read(whole.join("model.bpk")).unwrap();
    for resumed in [&once, &twice] {
        assert_eq!(history_without_seconds(resumed), expected);
        // A file per process, each whole: every epoch is in one of them.
        assert!(tensorboard_records(resumed) >= expected.lines().count());
        assert!(
            std::fs::read(resumed.join("model.bpk")).unwrap() == weights,
            "{} has other weights",
            resumed.display()
        );
    }
    for dir in [whole, once, twice] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// The newcomer's first-hour mistakes lose nothing: `--out` onto a run is refused (its files
/// untouched) unless `--overwrite`; a command that fails before its first epoch ends leaves no
/// run directory; `--resume` of such a run says it has nothing to resume.
#[test]
fn no_run_is_overwritten_and_a_failed_command_leaves_nothing() {
    let dir = scratch("first-hour");
    let run = dir.join("run");
    let r = run.to_str().unwrap();
    let quick = ["train", "--quiet", "--epochs", "2", "--out", r];
    kiln(&quick);
    let weights = std::fs::read(run.join("model.bpk")).unwrap();
    let history = std::fs::read(run.join("history.csv")).unwrap();

    let o = kiln_raw(&[
        "train", "--quiet", "--epochs", "3", "--seed", "2", "--out", r,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{r}: holds a run already; nothing was changed"))
            && err.contains("--overwrite"),
        "{err}"
    );
    assert!(std::fs::read(run.join("model.bpk")).unwrap() == weights);
    assert!(std::fs::read(run.join("history.csv")).unwrap() == history);

    kiln(&[
        "train",
        "--quiet",
        "--epochs",
        "3",
        "--out",
        r,
        "--overwrite",
    ]);
    let history = std::fs::read_to_string(run.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 4, "{history}");

    // Failures before the first epoch ends: a backend not compiled in, augmentation of
    // samples that are not images (iris's four measurements).
    for (i, extra) in [
        &["--device", "cuda"][..],
        &["--augment", "flip", "--dataset", "iris"],
    ]
    .iter()
    .enumerate()
    {
        let failed = dir.join(format!("failed-{i}"));
        let mut args = vec!["train", "--quiet", "--out", failed.to_str().unwrap()];
        args.extend(extra.iter());
        let o = kiln_raw(&args);
        assert_eq!(o.status.code(), Some(1), "{extra:?}");
        assert!(!failed.exists(), "{extra:?} left {}", failed.display());
    }

    // A model too large for the machine: its size, counted before any weight is allocated
    // (this aborted with "memory allocation of 400000000000 bytes failed", exit 134).
    let huge = dir.join("huge");
    for command in ["train", "summary"] {
        let mut args = vec![command, "--hidden", "10000000000"];
        if command == "train" {
            args.extend(["--out", huge.to_str().unwrap()]);
        }
        let o = kiln_raw(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{command}: {err}");
        assert!(
            err.contains("the model has 750,000,000,010 parameters")
                && err.contains("TB, more than the")
                && err.contains("make it smaller"),
            "{command}: {err}"
        );
        assert!(!huge.exists());
    }

    // Early stopping says when it stopped and which epoch's weights the run keeps.
    let early = dir.join("early");
    let o = kiln(&[
        "train",
        "--hidden",
        "16",
        "--epochs",
        "200",
        "--patience",
        "1",
        "--out",
        early.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    let history = std::fs::read_to_string(early.join("history.csv")).unwrap();
    let epochs = history.lines().count() - 1;
    assert!(
        epochs < 200
            && err.contains(&format!(
                "Epoch {epochs}: early stopping; restored the weights of epoch {} (the best \
                 val_loss)",
                epochs - 1
            )),
        "{err}"
    );

    // --resume of a finished run trains nothing and says so; with more --epochs it trains on
    // from where early stopping ended it, as Keras's `fit` called again.
    let e = early.to_str().unwrap();
    let o = kiln_raw(&["train", "--quiet", "--resume", e]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains(&format!(
                "a finished run ({epochs} epochs, ended by early stopping): nothing to resume"
            )),
        "{err}"
    );
    let more = (epochs + 50).to_string();
    kiln(&["train", "--quiet", "--resume", e, "--epochs", &more]);
    let history = std::fs::read_to_string(early.join("history.csv")).unwrap();
    let trained_on = history.lines().count() - 1;
    assert!(trained_on > epochs, "{history}");
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(early.join("metrics.json")).unwrap())
            .unwrap();
    assert_eq!(metrics["epochs_run"].as_u64(), Some(trained_on as u64));

    // A run directory whose training never reached a checkpoint: --resume says so.
    let bare = dir.join("bare");
    std::fs::create_dir_all(bare.join("checkpoint")).unwrap();
    std::fs::copy(run.join("config.json"), bare.join("config.json")).unwrap();
    let o = kiln_raw(&["train", "--quiet", "--resume", bare.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("an unfinished run") && err.contains("no checkpoint"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn resume_refuses_conflicting_flags_and_broken_checkpoints() {
    let dir = scratch("resume-bad");
    let d = dir.to_str().unwrap().to_string();
    kiln(&["train", "--quiet", "--epochs", "2", "--out", &d]);
    // As a run killed after its last checkpoint, before its test metrics: one to resume.
    std::fs::remove_file(dir.join("metrics.json")).unwrap();

    let o = kiln_raw(&["train", "--resume", &d, "--lr", "0.1", "--hidden", "8"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("--lr, --hidden"), "{err}");

    // A truncated weights file: an error naming it; the checkpoint is left as it was.
    let optim = dir.join("checkpoint/epoch-2/optim.bpk");
    let bytes = std::fs::read(&optim).unwrap();
    std::fs::write(&optim, &bytes[..bytes.len() / 2]).unwrap();
    let o = kiln_raw(&["train", "--quiet", "--resume", &d, "--epochs", "3"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("optim.bpk") && err.contains("corrupt"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(latest_epoch(&dir), 2);
    std::fs::write(&optim, &bytes).unwrap();

    // Another run's checkpoint.
    let other = scratch("resume-other");
    let o2 = other.to_str().unwrap().to_string();
    kiln(&[
        "train", "--quiet", "--epochs", "1", "--lr", "0.01", "--out", &o2,
    ]);
    std::fs::remove_dir_all(dir.join("checkpoint")).unwrap();
    copy_dir(&other.join("checkpoint"), &dir.join("checkpoint"));
    let o = kiln_raw(&["train", "--quiet", "--resume", &d]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("state.json") && err.contains("another configuration"),
        "{err}"
    );

    // Garbage where the state should be.
    std::fs::write(
        dir.join("checkpoint/epoch-1/state.json"),
        b"\x00\xffnot json",
    )
    .unwrap();
    let o = kiln_raw(&["train", "--quiet", "--resume", &d]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("state.json") && !err.contains("panicked"),
        "{err}"
    );
    for d in [dir, other] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_closed_pipe_ends_the_run_within_seconds() {
    let dir = scratch("pipe");
    // Progress and results into one pipe whose reader leaves after the first line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["train", "--out", dir.to_str().unwrap()])
        .env_remove("BURN_DEVICE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(first.starts_with("kiln: MLP"), "{first}");
    drop(stderr);
    drop(child.stdout.take());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "still running 20 s after its output was closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        status.code(),
        Some(141),
        "the status of a process ended by SIGPIPE"
    );
    // The run directory holds what was done, consistently.
    let done = latest_epoch(&dir);
    let rows = std::fs::read_to_string(dir.join("history.csv"))
        .map(|t| t.lines().count() - 1)
        .unwrap_or(0);
    assert_eq!(rows, done, "history.csv and the checkpoint agree");
    // Closed before its first checkpoint, the run leaves no directory.
    assert_eq!(dir.exists(), done > 0);
    let _ = std::fs::remove_dir_all(dir);
}

/// House prices at a rate of 10^6. With Adam (the default) the loss only grows to about
/// 1e26: Adam's steps are bounded by the rate, so it stays finite, as it would in Keras. Plain
/// SGD overflows within the first epoch, which is what TerminateOnNaN is for.
#[test]
fn a_diverging_run_stops_at_the_first_non_finite_loss() {
    let dir = scratch("nan");
    let d = dir.to_str().unwrap().to_string();
    let o = kiln_raw(&[
        "train",
        "--quiet",
        "--dataset",
        "house-prices",
        "--hidden",
        "32",
        "--dropout",
        "0",
        "--optimizer",
        "sgd",
        "--lr",
        "1e6",
        "--epochs",
        "20",
        "--out",
        &d,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a diverged run fails");
    assert!(
        err.contains("epoch") && err.contains("batch") && err.contains("lower --lr"),
        "{err}"
    );
    let epoch: usize = err
        .split("in epoch ")
        .nth(1)
        .and_then(|t| t.split(',').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no epoch in {err}"));
    // Plain SGD at 1e6 overflows in the first epoch: with no epoch to keep, the run leaves no
    // directory (the library's test keeps the epochs before a later divergence).
    assert_eq!(epoch, 1, "{err}");
    assert!(
        !dir.exists(),
        "a run with nothing to keep leaves no directory"
    );
}

#[test]
fn save_best_keeps_the_best_epochs_weights() {
    let dir = scratch("save-best");
    let d = dir.to_str().unwrap().to_string();
    kiln(&[
        "train",
        "--quiet",
        "--epochs",
        "8",
        "--save-best",
        "--lr",
        "0.05",
        "--out",
        &d,
    ]);
    let metrics = common::metrics(&dir);
    let best = metrics["best_epoch"].as_u64().unwrap() as usize;
    // restore-best is on: the run's weights are the best epoch's, so best.bpk holds the same.
    assert_eq!(
        std::fs::read(dir.join("best.bpk")).unwrap(),
        std::fs::read(dir.join("model.bpk")).unwrap(),
        "best epoch {best}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn plateau_lowers_the_rate_in_the_history() {
    let dir = scratch("plateau");
    let d = dir.to_str().unwrap().to_string();
    kiln(&[
        "train",
        "--quiet",
        "--epochs",
        "12",
        "--patience",
        "0",
        "--lr",
        "0.05",
        "--lr-schedule",
        "plateau:0.5:1:0.01",
        "--out",
        &d,
    ]);
    let history = std::fs::read_to_string(dir.join("history.csv")).unwrap();
    let rows: Vec<(f64, f64)> = history
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            (c[3].parse().unwrap(), c[5].parse().unwrap())
        })
        .collect();
    // Replay Keras's rule on the recorded validation losses: each epoch's rate must be the
    // one the rule set after the epoch before.
    let mut lr = 0.05;
    let mut best = f64::INFINITY;
    let mut wait = 0;
    for (i, &(val_loss, rate)) in rows.iter().enumerate() {
        assert!((rate - lr).abs() < 1e-9, "epoch {}: {rate} vs {lr}", i + 1);
        if val_loss < best - 1e-4 {
            best = val_loss;
            wait = 0;
        } else {
            wait += 1;
            if wait >= 1 && lr > 0.01 {
                lr = f64::max(lr * 0.5, 0.01);
                wait = 0;
            }
        }
    }
    assert!(
        rows.iter().any(|r| r.1 < 0.05),
        "the rate never dropped: {history}"
    );
    assert!(rows.iter().all(|r| r.1 >= 0.01 - 1e-12));
    std::fs::remove_dir_all(dir).unwrap();
}

/// A PNG file's width and height, after checking its signature.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is a PNG",
        path.display()
    );
    assert_eq!(&bytes[12..16], b"IHDR");
    let int = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (int(16), int(20))
}

#[test]
fn runs_draw_their_curves_and_plot_overlays_runs() {
    let one = scratch("plot-one");
    let two = scratch("plot-two");
    kiln(&[
        "train",
        "--quiet",
        "--epochs",
        "3",
        "--out",
        one.to_str().unwrap(),
    ]);
    kiln(&[
        "train",
        "--quiet",
        "--epochs",
        "3",
        "--dataset",
        "house-prices",
        "--out",
        two.to_str().unwrap(),
    ]);
    // Side by side, classification: loss and accuracy panels; regression: the loss alone (a
    // constant learning rate is named in the legend, not drawn).
    let (w, h) = png_size(&one.join("history.png"));
    let (w2, h2) = png_size(&two.join("history.png"));
    assert_eq!(h, h2);
    assert_eq!(w, 2 * w2, "two panels against one");
    let (cw, ch) = png_size(&one.join("confusion.png"));
    assert!(cw > 200 && ch > 200);
    assert!(
        !two.join("confusion.png").exists(),
        "regression has no confusion matrix"
    );
    let summary = std::fs::read_to_string(one.join("summary.txt")).unwrap();
    assert!(summary.contains("Total params: 17,226"), "{summary}");

    let both = one.join("both.png");
    let o = kiln(&[
        "plot",
        "--run",
        one.to_str().unwrap(),
        "--run",
        two.to_str().unwrap(),
        "--output",
        both.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("both.png"));
    assert_eq!(
        png_size(&both),
        (w, h),
        "one panel per metric, both runs on it: loss and accuracy"
    );

    // A damaged history is an error naming the file, row and column.
    std::fs::write(
        two.join("history.csv"),
        format!("{}\n1,0.5,,oops,,0.1,1\n", HEADER),
    )
    .unwrap();
    let o = kiln_raw(&["plot", "--run", two.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("history.csv") && err.contains("row 2, column val_loss"),
        "{err}"
    );
    for d in [one, two] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

const HEADER: &str = "epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds";

#[test]
fn export_writes_pytorch_names_and_layouts_and_import_reads_them_back() {
    let dir = scratch("export");
    let d = dir.to_str().unwrap().to_string();
    kiln(&["train", "--quiet", "--epochs", "2", "--out", &d]);
    let before = kiln(&["eval", "--run", &d]);
    let bpk = std::fs::read(dir.join("model.bpk")).unwrap();
    kiln(&["export", "--run", &d, "--format", "safetensors"]);
    let file = std::fs::read(dir.join("model.safetensors")).unwrap();
    // The header: little-endian length, then JSON naming each tensor's dtype and shape.
    let n = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&file[8..8 + n]).unwrap();
    // PyTorch's nn.Linear(64, 128) keeps its weight as [out, in] = [128, 64].
    assert_eq!(
        header["hidden.0.linear.weight"]["shape"],
        serde_json::json!([128, 64])
    );
    assert_eq!(
        header["output.weight"]["shape"],
        serde_json::json!([10, 64])
    );
    assert_eq!(header["output.bias"]["dtype"], "F32");

    std::fs::remove_file(dir.join("model.bpk")).unwrap();
    kiln(&[
        "import",
        "--run",
        &d,
        "--input",
        dir.join("model.safetensors").to_str().unwrap(),
    ]);
    let after = kiln(&["eval", "--run", &d]);
    assert_eq!(before.stdout, after.stdout, "the same test metrics");
    assert_eq!(
        std::fs::read(dir.join("model.bpk")).unwrap().len(),
        bpk.len(),
        "the same weights file"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn lr_find_suggests_a_rate_at_which_the_digits_converge() {
    let dir = scratch("lr-find");
    let o = kiln(&[
        "lr-find",
        "--dataset",
        "digits",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    let lr: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("suggested learning rate: "))
        .unwrap_or_else(|| panic!("no suggestion in {text}"))
        .parse()
        .unwrap();
    assert!((1e-5..1.0).contains(&lr), "suggested {lr}");
    let csv = std::fs::read_to_string(dir.join("lr_find.csv")).unwrap();
    assert!(csv.starts_with("lr,loss,smoothed_loss\n") && csv.lines().count() > 50);
    assert!(png_size(&dir.join("lr_find.png")).0 > 0);

    // A run at the suggested rate converges.
    let run = dir.join("run");
    let lr = lr.to_string();
    let o = kiln(&[
        "train",
        "--quiet",
        "--lr",
        &lr,
        "--epochs",
        "10",
        "--out",
        run.to_str().unwrap(),
    ]);
    let accuracy = common::stdout_value(&o, "test_accuracy");
    assert!(
        accuracy >= 0.9,
        "test accuracy {accuracy} at the suggested rate {lr}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A model whose checkpoints will be large says so before its first epoch (a 1,000,000-wide
/// hidden layer: 75 million parameters, about 1.2 GB per checkpoint with Adam).
#[test]
fn a_large_checkpoint_is_announced_before_training() {
    let dir = scratch("large-checkpoint");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["train", "--hidden", "1000000", "--epochs", "1", "--out"])
        .arg(dir.join("run"))
        .env_remove("BURN_DEVICE")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let note = lines
        .map_while(Result::ok)
        .find(|l| l.contains("note:"))
        .unwrap_or_default();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        note.contains(
            "the model has 75,000,010 parameters; each checkpoint will take about 1.2 GB"
        ) && note.contains("model.bpk 300 MB"),
        "{note}"
    );
}
