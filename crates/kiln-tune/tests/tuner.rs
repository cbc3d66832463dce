//! `Tuner` from code on real data: the learning rate and width of an MLP on the embedded
//! digits, trials trained by kiln's trainer and pruned by successive halving through
//! `Trial::pruning_callback`.

use std::sync::Mutex;

use burn::tensor::Device;
use kiln_datasets::{Standardizer, digits, split};
use kiln_fnn::MlpConfig;
use kiln_train::{Task, Trainer, TrainerConfig, Verbosity};
use kiln_tune::{Pruner, Sampler, SearchSpace, TpeConfig, TrialState, Tuner};

/// Trials draw from the device's one generator: one initialisation at a time.
static DEVICE_RNG: Mutex<()> = Mutex::new(());

#[test]
fn a_tuned_mlp_on_the_digits_prunes_bad_rates_and_finds_a_good_one() {
    let parts = split(&digits(), 0.2, 0).unwrap();
    let (mut train, mut valid) = (parts.first, parts.second);
    let scaler = Standardizer::fit(&train);
    scaler.transform(&mut train).unwrap();
    scaler.transform(&mut valid).unwrap();
    let max_epochs = 8;
    let calls: Mutex<Vec<(u64, u32, bool)>> = Mutex::default();

    let space = SearchSpace::new()
        .log_float("lr", 1e-5, 1.0)
        .choice("hidden", &["16", "64"]);
    let study = Tuner::new(space, "val_accuracy")
        .sampler(Sampler::Tpe(TpeConfig {
            startup_trials: 5,
            ..TpeConfig::default()
        }))
        .pruner(Pruner::Asha {
            min_epochs: 1,
            reduction_factor: 3,
        })
        .seed(7)
        .trials(12)
        .workers(2)
        .optimize(|trial| {
            calls
                .lock()
                .unwrap()
                .push((trial.number(), trial.start_epoch(), trial.promoted()));
            let device = Device::flex();
            let model = {
                let _draws = DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner());
                device.seed(1);
                let hidden: usize = trial.choice("hidden").parse().unwrap();
                MlpConfig::new(64, vec![hidden], 10).init(&device)
            };
            let config = TrainerConfig {
                epochs: max_epochs,
                lr: trial.float("lr"),
                verbosity: Verbosity::Quiet,
                early_stopping: None,
                ..TrainerConfig::new(Task::Classification)
            };
            let fit = Trainer::new(config, device)
                .map_err(|e| e.to_string())?
                .with_callback(trial.pruning_callback(max_epochs))
                .fit_with_validation(model, train.clone(), valid.clone())
                .map_err(|e| e.to_string())?;
            let best = fit
                .history
                .epochs
                .iter()
                .filter_map(|e| e.val_accuracy)
                .fold(0.0, f64::max);
            Ok::<f64, String>(best)
        })
        .unwrap();

    assert_eq!(study.trials.len(), 12);
    let numbers: Vec<u64> = study.trials.iter().map(|t| t.number).collect();
    assert_eq!(numbers, (0..12).collect::<Vec<_>>());
    let best = study.best().unwrap();
    assert_eq!(best.state, TrialState::Complete);
    assert!(best.value.unwrap() > 0.95, "best accuracy {:?}", best.value);
    let lr = best.params["lr"].as_f64().unwrap();
    assert!(lr >= 1e-3, "best rate {lr}");
    // ASHA paused trials at a rung and promoted some later: the objective ran them again,
    // told the epochs they had reached (this one trains from the start again), and the
    // pruner, asked only past them, let them beyond.
    let calls = calls.into_inner().unwrap();
    let again: Vec<&(u64, u32, bool)> = calls.iter().filter(|c| c.2).collect();
    assert!(!again.is_empty(), "no trial promoted: {calls:?}");
    for &&(number, start, _) in &again {
        assert!([1, 3].contains(&start), "{calls:?}");
        let first = calls.iter().position(|c| c.0 == number).unwrap();
        assert_eq!(calls[first].1, 0);
        let record = &study.trials[number as usize];
        assert!(record.epochs() > start, "trial {number}: {record:?}");
    }
    // Successive halving stopped some trials at a rung (epochs 1 or 3), before the end.
    let pruned: Vec<_> = study
        .trials
        .iter()
        .filter(|t| t.state == TrialState::Pruned)
        .collect();
    assert!(!pruned.is_empty(), "no trial pruned");
    for t in &pruned {
        assert!(
            [1, 3].contains(&t.epochs()),
            "trial {} pruned at {}",
            t.number,
            t.epochs()
        );
        // A pruned trial's value is the best it reported.
        let reported = t.intermediate.iter().map(|(_, v)| *v).fold(0.0, f64::max);
        assert_eq!(t.value, Some(reported));
    }
    assert!(study.epochs() < 12 * max_epochs as u64);
}

#[test]
fn a_failing_objective_is_recorded_and_the_study_goes_on() {
    let space = SearchSpace::new().int("n", 0, 3);
    let study = Tuner::new(space, "loss")
        .sampler(Sampler::Grid { points: 4 })
        .optimize(|trial| match trial.int("n") {
            0 => Err("no good".to_string()),
            1 => panic!("a bug in the objective"),
            n => Ok(n as f64),
        })
        .unwrap();
    assert_eq!(study.trials.len(), 4);
    let by_n = |n: i64| {
        study
            .trials
            .iter()
            .find(|t| t.params["n"].as_f64() == Some(n as f64))
            .unwrap()
    };
    assert_eq!(by_n(0).state, TrialState::Failed);
    assert_eq!(by_n(0).message.as_deref(), Some("no good"));
    assert_eq!(by_n(1).state, TrialState::Failed);
    assert!(by_n(1).message.as_deref().unwrap().contains("a bug"));
    assert_eq!(study.best().unwrap().value, Some(2.0));
}
