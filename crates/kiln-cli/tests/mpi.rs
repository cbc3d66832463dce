//! `mpirun -np N kiln train` (cargo feature `mpi`, Open MPI): data-parallel over processes on
//! the loopback (also with two devices inside each rank), against one process; resumed with
//! another number of ranks; a killed rank and an unreadable file end the whole job. Built only
//! with `--features mpi`:
//! `cargo test --release -p kiln-cli --features mpi --test mpi`.
#![cfg(feature = "mpi")]

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{kiln, resume, scratch};

/// `mpirun -np n kiln ARGS`, private temporary files under `tmp`.
fn mpirun(n: usize, tmp: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("mpirun");
    command
        .args([
            "--allow-run-as-root",
            "--oversubscribe",
            "-np",
            &n.to_string(),
        ])
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env("TMPDIR", tmp);
    command
}

fn run(n: usize, tmp: &Path, args: &[&str]) -> Output {
    let out = mpirun(n, tmp, args).output().expect("mpirun runs");
    assert!(
        out.status.success(),
        "mpirun -np {n} kiln {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Each row of a run's history.csv: epoch, train_loss, train_accuracy, val_loss, val_accuracy.
fn history(dir: &Path) -> Vec<Vec<f64>> {
    std::fs::read_to_string(dir.join("history.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').take(5).map(|v| v.parse().unwrap()).collect())
        .collect()
}

fn assert_close_histories(a: &Path, b: &Path, tolerance: f64) {
    let (a, b) = (history(a), history(b));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        for (u, v) in x.iter().zip(y) {
            assert!((u - v).abs() <= tolerance, "{x:?} against {y:?}");
        }
    }
}

/// The test loss and confusion matrix a run recorded.
fn tested(dir: &Path) -> (f64, serde_json::Value) {
    let m = common::metrics(dir);
    (
        m["test_loss"].as_f64().unwrap(),
        m["confusion_matrix"].clone(),
    )
}

fn train_args(out: &Path, epochs: &str) -> Vec<String> {
    [
        "train",
        "--quiet",
        "--dataset",
        "digits",
        "--hidden",
        "64",
        "--dropout",
        "0",
        "--batch-size",
        "32",
        "--patience",
        "0",
        "--epochs",
        epochs,
        "--out",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([out.to_str().unwrap().to_string()])
    .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn two_and_three_ranks_and_devices_inside_ranks_train_as_one_process_and_resume_with_another_count()
{
    let dir = scratch("mpi");
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let alone = dir.join("alone");
    kiln(&strs(&train_args(&alone, "8")));
    // 1,150 training digits: 35 full batches of 32 and one of 30, split 15/15 over two ranks
    // and 10/10/10 over three (32 does not split over three: a global batch of 30 there).
    let two = dir.join("two");
    run(2, &tmp, &strs(&train_args(&two, "8")));
    assert_close_histories(&two, &alone, 1e-6);
    // The same model: the test loss within 1e-6, the same prediction for every test digit.
    let ((loss1, confusion1), (loss2, confusion2)) = (tested(&alone), tested(&two));
    assert!((loss1 - loss2).abs() < 1e-6, "{loss1} {loss2}");
    assert_eq!(confusion1, confusion2);
    // Rank 0 alone wrote: no other rank's directory is left.
    assert_eq!(
        std::fs::read_dir(&tmp)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("kiln-rank")
            })
            .count(),
        0
    );

    // Two ranks of two devices each: four chunks of 8 per step (the last step's 30 as
    // 8 + 8 + 8 + 6), the same 8 epochs.
    let mut args = train_args(&dir.join("two_by_two"), "8");
    args.extend(["--devices".into(), "flex:0,flex:1".into()]);
    run(2, &tmp, &strs(&args));
    assert_close_histories(&dir.join("two_by_two"), &alone, 1e-6);
    assert_eq!(tested(&dir.join("two_by_two")).1, confusion1);

    // Three ranks, batch 30, against one process of batch 30.
    let mut args = train_args(&dir.join("three"), "4");
    args[9] = "30".into();
    run(3, &tmp, &strs(&args));
    let mut alone_args = train_args(&dir.join("alone30"), "4");
    alone_args[9] = "30".into();
    kiln(&strs(&alone_args));
    assert_close_histories(&dir.join("three"), &dir.join("alone30"), 1e-6);

    // Two ranks for 4 epochs, one process on to 8: the 8 epochs of one process.
    let resumed = dir.join("resumed");
    run(2, &tmp, &strs(&train_args(&resumed, "4")));
    resume(&resumed, "8");
    assert_close_histories(&resumed, &alone, 1e-6);
    // And one process for 4, two ranks on to 8.
    let resumed2 = dir.join("resumed2");
    kiln(&strs(&train_args(&resumed2, "4")));
    run(
        2,
        &tmp,
        &[
            "train",
            "--quiet",
            "--resume",
            resumed2.to_str().unwrap(),
            "--epochs",
            "8",
        ],
    );
    assert_close_histories(&resumed2, &alone, 1e-6);
}

/// The processes of the job whose private directories (ranks above 0) are in `tmp`.
fn other_ranks(tmp: &Path) -> Vec<u32> {
    std::fs::read_dir(tmp)
        .map(|entries| {
            entries
                .filter_map(|e| {
                    let name = e.ok()?.file_name().to_string_lossy().into_owned();
                    name.strip_prefix("kiln-rank-")?.parse().ok()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_killed_rank_ends_the_job_within_seconds_and_the_run_resumes() {
    let dir = scratch("mpi-kill");
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let out = dir.join("run");
    let args = [
        "train",
        "--quiet",
        "--dataset",
        "mnist",
        "--hidden",
        "256,128",
        "--dropout",
        "0",
        "--epochs",
        "30",
        "--patience",
        "0",
        "--out",
        out.to_str().unwrap(),
    ];
    let mut job = mpirun(2, &tmp, &args).spawn().unwrap();
    // Wait for a complete epoch, then kill rank 1 mid-way through the next.
    let latest = out.join("checkpoint").join("latest");
    let start = Instant::now();
    while !latest.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no epoch finished"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    let ranks = other_ranks(&tmp);
    assert_eq!(ranks.len(), 1, "{ranks:?}");
    let killed = Instant::now();
    Command::new("kill")
        .args(["-9", &ranks[0].to_string()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(status) = job.try_wait().unwrap() {
            break status;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the job outlived its rank"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    eprintln!(
        "job ended {:.1} s after its rank 1 was killed",
        killed.elapsed().as_secs_f64()
    );
    // The last complete checkpoint resumes, in one process.
    resume(&out, "2");
    assert_eq!(history(&out).len(), 2);
}

#[test]
fn a_rank_that_cannot_read_a_file_ends_the_job_naming_it() {
    let dir = scratch("mpi-corrupt");
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let folder = dir.join("images");
    // Two classes of 8x8 grey PNGs; one file's pixel data cut short after its header.
    let mut good = Vec::new();
    for class in ["a", "b"] {
        std::fs::create_dir_all(folder.join(class)).unwrap();
        for i in 0..40u8 {
            let path = folder.join(class).join(format!("{i}.png"));
            let pixels: Vec<u8> = (0..64u8).map(|p| p.wrapping_mul(i + 1)).collect();
            image::GrayImage::from_raw(8, 8, pixels)
                .unwrap()
                .save(&path)
                .unwrap();
            let bytes = std::fs::read(&path).unwrap();
            good.push((path, bytes));
        }
    }
    let (broken, bytes) = &good[57];
    std::fs::write(broken, &bytes[..bytes.len() - 30]).unwrap();
    let out = dir.join("run");
    let data = format!("images:{}", folder.display());
    let o = mpirun(
        2,
        &tmp,
        &[
            "train",
            "--quiet",
            "--model",
            "mlp",
            "--dataset",
            &data,
            "--epochs",
            "3",
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    let name = broken.file_name().unwrap().to_string_lossy();
    assert!(err.contains("rank ") && err.contains(&*name), "{err}");
}
