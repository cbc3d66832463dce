//! `kiln tune` end to end on the embedded digits: a study with TPE and successive halving whose
//! best configuration trains again to the same history, and whose promoted trials went on from
//! their checkpoints as if never paused, a study killed and resumed to the
//! same table, a study whose binary is removed mid-way stopping with the reason and resumed, a
//! failing trial recorded, two workers, bad ranges refused, and (when
//! `KILN_TEST_POSTGRES` names a server, as .ci/run starts one) two processes sharing a study
//! in PostgreSQL.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{history_without_seconds, kiln, kiln_raw, scratch};

/// tune.csv's rows as maps from column to cell.
fn rows(dir: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut reader = csv_reader(&dir.join("tune.csv"));
    let header: Vec<String> = reader.next().unwrap();
    reader
        .map(|row| header.iter().cloned().zip(row).collect())
        .collect()
}

fn csv_reader(path: &Path) -> std::vec::IntoIter<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    // The cells kiln tune writes quote only lists ("64,32"): split on commas outside quotes.
    text.lines()
        .map(|line| {
            let mut cells = vec![String::new()];
            let mut quoted = false;
            for c in line.chars() {
                match c {
                    '"' => quoted = !quoted,
                    ',' if !quoted => cells.push(String::new()),
                    c => cells.last_mut().unwrap().push(c),
                }
            }
            cells
        })
        .collect::<Vec<_>>()
        .into_iter()
}

/// tune.csv's trial, learning rate, value, epochs and state, row by row: what a resumed study
/// must end with, as the uninterrupted one.
fn table(dir: &Path) -> Vec<Vec<String>> {
    rows(dir)
        .into_iter()
        .map(|r| {
            ["trial", "lr", "value", "epochs", "state"]
                .map(|c| r[c].clone())
                .to_vec()
        })
        .collect()
}

/// `kiln ARGS` started in the background, its output discarded (a study to kill).
fn spawn_study(args: &[String]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// `kiln ARGS` run to its end, asserting that it succeeds (the uninterrupted study).
fn run_study(args: &[String]) {
    kiln(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

/// Polls `done` every 5 ms until it holds; fails with `why` after two minutes.
fn wait_until(done: impl Fn() -> bool, why: &str) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(120), "{why}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn dir_arg(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

#[test]
fn a_study_prunes_with_asha_and_its_best_config_trains_again_to_the_same_history() {
    let root = scratch("tune-study");
    let dir = root.join("study");
    let o = kiln(&[
        "tune",
        "--dir",
        dir_arg(&dir),
        "--trials",
        "10",
        "--lr",
        "1e-5..1e-1:log",
        "--hidden",
        "16|64,32",
        "--epochs",
        "9",
        "--patience",
        "0",
        "--startup-trials",
        "4",
        "--pruner",
        "asha",
        "--study-seed",
        "3",
    ]);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("10 trials:"), "{table}");
    let rows = rows(&dir);
    assert_eq!(rows.len(), 10);
    let states: Vec<&str> = rows.iter().map(|r| r["state"].as_str()).collect();
    assert!(
        states.iter().all(|s| ["complete", "pruned"].contains(s)),
        "{states:?}"
    );
    let pruned: Vec<_> = rows.iter().filter(|r| r["state"] == "pruned").collect();
    assert!(!pruned.is_empty(), "{states:?}");
    for r in &pruned {
        // Rungs at epochs 1 and 3 (and 9, the last).
        assert!(["1", "3"].contains(&r["epochs"].as_str()), "{r:?}");
    }
    // The best value is a good digits loss, and is the lowest val_loss in its trial's history.
    let best = rows
        .iter()
        .filter(|r| r["state"] == "complete")
        .min_by(|a, b| {
            let v =
                |r: &std::collections::BTreeMap<String, String>| r["value"].parse::<f64>().unwrap();
            v(a).total_cmp(&v(b))
        })
        .unwrap();
    let value: f64 = best["value"].parse().unwrap();
    assert!(value < 0.2, "best val_loss {value}");
    let trial_dir = dir
        .join("trials")
        .join(format!("{:04}", best["trial"].parse::<u64>().unwrap()));
    let history = std::fs::read_to_string(trial_dir.join("history.csv")).unwrap();
    let lowest = history
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(3).unwrap().parse::<f64>().unwrap())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(lowest, value);
    assert!(
        std::fs::read(dir.join("tune.png"))
            .unwrap()
            .starts_with(b"\x89PNG")
    );

    // kiln train --config best/config.json: the same run, epoch for epoch.
    let again = root.join("again");
    kiln(&[
        "train",
        "--config",
        dir.join("best").join("config.json").to_str().unwrap(),
        "--out",
        dir_arg(&again),
        "--quiet",
    ]);
    assert_eq!(
        history_without_seconds(&again),
        history_without_seconds(&trial_dir)
    );
    // ASHA paused some trials at a rung and promoted them later: their logs hold two runs,
    // and each went on from its checkpoint as if it had never stopped (its epochs are the first
    // ones of its configuration trained at once).
    let promoted: Vec<u64> = (0..10)
        .filter(|n| {
            let log = std::fs::read_to_string(dir.join("trials").join(format!("{n:04}.log")));
            log.unwrap().matches("test_loss").count() == 2
        })
        .collect();
    assert!(!promoted.is_empty(), "no trial was promoted");
    for n in promoted {
        let trial = dir.join("trials").join(format!("{n:04}"));
        let once = root.join(format!("once-{n}"));
        kiln(&[
            "train",
            "--config",
            trial.join("config.json").to_str().unwrap(),
            "--out",
            dir_arg(&once),
            "--quiet",
        ]);
        let (paused, whole) = (
            history_without_seconds(&trial),
            history_without_seconds(&once),
        );
        assert!(paused.lines().count() > 2, "trial {n}: {paused}");
        assert!(whole.starts_with(&paused), "trial {n}:\n{paused}\n{whole}");
    }
    // Flags that would change what it trains are refused with it.
    let o = kiln_raw(&[
        "train",
        "--config",
        dir.join("best").join("config.json").to_str().unwrap(),
        "--lr",
        "0.5",
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("--lr") && e.contains("--config"),
        "{e}"
    );
    std::fs::remove_dir_all(root).unwrap();
}

/// The study of the resume test: random search, each trial long enough to be killed in.
fn resume_study(dir: &Path) -> Vec<String> {
    [
        "tune",
        "--dir",
        dir_arg(dir),
        "--trials",
        "5",
        // TPE from trial 2, with a good share that the resumed process must read back from
        // the study (the default, 0.15, samples trials 3 and 4 elsewhere).
        "--sampler",
        "tpe",
        "--startup-trials",
        "2",
        "--gamma",
        "0.5",
        "--study-seed",
        "11",
        "--lr",
        "1e-3..1e-1:log",
        "--epochs",
        "60",
        "--patience",
        "0",
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn a_killed_study_resumes_without_rerunning_a_finished_trial_to_the_same_table() {
    let root = scratch("tune-resume");
    let (killed, whole) = (root.join("killed"), root.join("whole"));
    let mut child = spawn_study(&resume_study(&killed));
    // Killed (SIGKILL, no chance to tidy up) once trial 2 has trained an epoch.
    let trial_2 = killed.join("trials").join("0002").join("history.csv");
    wait_until(|| trial_2.exists(), "trial 2 never started");
    child.kill().unwrap();
    child.wait().unwrap();
    let finished = killed.join("trials").join("0000").join("metrics.json");
    let before = std::fs::metadata(&finished).unwrap().modified().unwrap();

    let o = kiln(&["tune", "--resume", dir_arg(&killed)]);
    let printed = String::from_utf8_lossy(&o.stdout).to_string();
    let stderr = String::from_utf8_lossy(&o.stderr);
    // Trials 0 and 1 were finished: not run again.
    assert_eq!(
        std::fs::metadata(&finished).unwrap().modified().unwrap(),
        before
    );
    assert!(
        !stderr.contains("trial 0 ") && !stderr.contains("trial 1 "),
        "{stderr}"
    );

    run_study(&resume_study(&whole));
    assert_eq!(table(&killed), table(&whole));
    assert_eq!(table(&killed).len(), 5);
    assert!(printed.contains("5 trials: 5 complete"), "{printed}");
    std::fs::remove_dir_all(root).unwrap();
}

/// An ASHA study (rungs at epochs 4, 12 and 36 of 40) whose trial 0 pauses at epoch 4 and
/// is promoted later.
fn promoting_study(dir: &Path) -> Vec<String> {
    [
        "tune",
        "--dir",
        dir_arg(dir),
        "--trials",
        "6",
        "--sampler",
        "random",
        "--study-seed",
        "3",
        "--lr",
        "1e-3..1e-1:log",
        "--batch-size",
        "16",
        "--epochs",
        "40",
        "--patience",
        "0",
        "--pruner",
        "asha",
        "--min-epochs",
        "4",
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn a_study_killed_while_a_promoted_trial_trains_on_resumes_to_the_same_table() {
    let root = scratch("tune-promoted");
    let (killed, whole) = (root.join("killed"), root.join("whole"));
    let mut child = spawn_study(&promoting_study(&killed));
    // Killed once trial 0, paused at epoch 4, has trained on for an epoch.
    let trial_0 = killed.join("trials").join("0000");
    let epochs = || {
        std::fs::read_to_string(trial_0.join("history.csv"))
            .map_or(0, |h| h.lines().count().saturating_sub(1))
    };
    wait_until(|| epochs() >= 5, "trial 0 was never promoted");
    child.kill().unwrap();
    child.wait().unwrap();
    let paused: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(trial_0.join("metrics.json")).unwrap())
            .unwrap();
    assert_eq!(paused["epochs_run"], 4, "killed after its second run ended");

    kiln(&["tune", "--resume", dir_arg(&killed)]);
    run_study(&promoting_study(&whole));
    assert_eq!(table(&killed), table(&whole));
    // Trial 0 went on past epoch 4, and the study ended with a trial trained to epoch 40.
    let whole_table = table(&whole);
    assert_ne!(whole_table[0][3], "4", "{whole_table:?}");
    assert!(
        whole_table
            .iter()
            .any(|r| r[3] == "40" && r[4] == "complete"),
        "{whole_table:?}"
    );
    assert_eq!(
        history_without_seconds(&trial_0),
        history_without_seconds(&whole.join("trials").join("0000"))
    );
    std::fs::remove_dir_all(root).unwrap();
}

/// A kiln binary removed while its study runs (as a rebuild does): the next trial cannot
/// start, the study stops with an error saying why and how to go on, and `--resume` with the
/// kiln there now finishes it.
#[test]
fn a_study_whose_kiln_binary_is_removed_says_so_and_resumes() {
    let root = scratch("tune-removed-binary");
    let dir = root.join("study");
    let copy = root.join("kiln-copy");
    std::fs::copy(env!("CARGO_BIN_EXE_kiln"), &copy).unwrap();
    let child = Command::new(&copy)
        .args([
            "tune",
            "--dir",
            dir_arg(&dir),
            "--trials",
            "3",
            "--sampler",
            "random",
        ])
        .args([
            "--lr",
            "1e-3..1e-1:log",
            "--epochs",
            "60",
            "--patience",
            "0",
            "--quiet",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let trial_0 = dir.join("trials").join("0000").join("history.csv");
    wait_until(|| trial_0.exists(), "trial 0 never started");
    std::fs::remove_file(&copy).unwrap();
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(
        stderr.contains("was replaced or removed while it ran")
            && stderr.contains(&format!("{}, was", copy.display()))
            && stderr.contains(&format!("kiln tune --resume {}", dir.display())),
        "{stderr}"
    );
    let o = kiln(&["tune", "--resume", dir_arg(&dir)]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("3 trials: 3 complete"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_failing_trial_is_recorded_and_the_study_goes_on_with_two_workers() {
    let root = scratch("tune-fail");
    let dir = root.join("study");
    // On a grid: --batch-size 0 fails the trainer's check; the others train.
    kiln(&[
        "tune",
        "--dir",
        dir_arg(&dir),
        "--sampler",
        "grid",
        "--batch-size",
        "0|16|64",
        "--optimizer",
        "adam|sgd",
        "--epochs",
        "3",
        "--workers",
        "2",
        "--quiet",
    ]);
    let rows = rows(&dir);
    assert_eq!(rows.len(), 6);
    let mut numbers: Vec<u64> = rows.iter().map(|r| r["trial"].parse().unwrap()).collect();
    numbers.sort();
    assert_eq!(numbers, (0..6).collect::<Vec<_>>());
    for r in &rows {
        if r["batch-size"] == "0" {
            assert_eq!(r["state"], "failed", "{r:?}");
            assert!(r["message"].contains("--batch-size"), "{r:?}");
        } else {
            assert_eq!(r["state"], "complete", "{r:?}");
        }
    }
    // Every combination once.
    let mut pairs: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r["batch-size"].clone(), r["optimizer"].clone()))
        .collect();
    pairs.sort();
    pairs.dedup();
    assert_eq!(pairs.len(), 6);
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn ranges_that_cannot_be_searched_are_refused_before_any_trial() {
    let root = scratch("tune-bad");
    let dir = root.join("study");
    for (args, expected) in [
        (vec!["--epochs", "5.5..9"], "--epochs"),
        (vec!["--lr", "0..0.1:log"], "above 0"),
        (vec!["--dataset", "digits|iris"], "cannot be searched"),
        (vec!["--optimizer", "adam|lion"], "lion"),
        (vec!["--no-such-flag", "1..2"], "no such flag"),
        (vec!["--lr", "1e-3..1e-1:log", "--gamma", "0"], "gamma"),
    ] {
        let mut argv = vec!["tune", "--trials", "2", "--dir", dir_arg(&dir)];
        argv.extend(args);
        let o = kiln_raw(&argv);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.contains(expected), "{argv:?}: {e}");
        assert!(!dir.join("tune.json").exists(), "{argv:?} left a study");
    }
    // No budget: refused too.
    let o = kiln_raw(&["tune", "--lr", "0.001..0.1", "--dir", dir_arg(&dir)]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("budget"));
    std::fs::remove_dir_all(root).unwrap();
}

/// Two `kiln tune` processes (as on two machines) on one study in a real PostgreSQL server:
/// together they run the budget, each trial once.
#[test]
fn two_processes_share_a_study_in_postgres() {
    let Ok(url) = std::env::var("KILN_TEST_POSTGRES") else {
        eprintln!("KILN_TEST_POSTGRES is not set: no PostgreSQL server to test against");
        return;
    };
    let root = scratch("tune-postgres");
    let study = format!("shared-{}-{}", std::process::id(), kiln::tune::now() as u64);
    let spawn = |name: &str| {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args([
                "tune",
                "--storage",
                &url,
                "--study",
                &study,
                "--dir",
                dir_arg(&root.join(name)),
                "--trials",
                "8",
                "--lr",
                "1e-3..1e-1:log",
                "--epochs",
                "20",
                "--patience",
                "0",
                "--quiet",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("a"), spawn("b"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    for o in [&a, &b] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let ran = |name: &str| -> Vec<u64> {
        std::fs::read_dir(root.join(name).join("trials"))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut all: Vec<u64> = ran("a").into_iter().chain(ran("b")).collect();
    all.sort();
    assert_eq!(all, (0..8).collect::<Vec<_>>(), "each trial once");
    // Both processes' tables show the whole study.
    for name in ["a", "b"] {
        assert_eq!(rows(&root.join(name)).len(), 8);
    }
    std::fs::remove_dir_all(root).unwrap();
}
