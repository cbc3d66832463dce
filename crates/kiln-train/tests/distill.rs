//! Distillation from the library: a CNN teaches an MLP on the digits (`Trainer::with_teacher`).

use burn::tensor::{Device, Tensor};
use kiln_cnn::{Cnn, CnnConfig, Preset};
use kiln_datasets::{Data, Targets, digit_images, split};
use kiln_fnn::{Mlp, MlpConfig};
use kiln_train::{Distillation, Task, Trainer, TrainerConfig, Verbosity, evaluate};

/// The tests draw from the device's one generator: one at a time, for the same draws.
static DEVICE_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The digits as 1x8x8 images (pixels in [0, 1]), split 80/20: the CNN reads them as images,
/// the MLP as 64 features.
fn images_split() -> (Data, Data) {
    let parts = split(&digit_images(), 0.2, 0).unwrap();
    (parts.first, parts.second)
}

fn config(epochs: usize, distillation: Option<Distillation>) -> TrainerConfig {
    TrainerConfig {
        epochs,
        lr: 0.003,
        verbosity: Verbosity::Quiet,
        distillation,
        ..TrainerConfig::new(Task::Classification)
    }
}

fn teacher(train: &Data) -> Cnn {
    let device = Device::flex();
    device.seed(1);
    let cnn = CnnConfig::preset(Preset::Digits, 10).init(&device);
    Trainer::new(config(15, None), device)
        .unwrap()
        .fit(cnn, train)
        .unwrap()
        .model
}

fn student(seed: u64) -> Mlp {
    let device = Device::flex();
    device.seed(seed);
    MlpConfig::new(64, vec![32], 10).init(&device)
}

/// `data` with every label replaced by class 0: nothing to learn from the labels.
fn unlabelled(data: &Data) -> Data {
    let mut data = data.clone();
    if let Targets::Classes { labels, .. } = &mut data.y {
        labels.iter_mut().for_each(|l| *l = 0);
    }
    data
}

fn accuracy(model: &Mlp, test: &Data) -> f64 {
    evaluate(model, test, Task::Classification, 256, &Device::flex())
        .accuracy
        .unwrap()
}

fn values(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

#[test]
fn a_student_learns_the_digits_from_its_teacher_alone() {
    let _draws = DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let (train, test) = images_split();
    let teacher = teacher(&train);
    let taught = evaluate(&teacher, &test, Task::Classification, 256, &Device::flex());
    assert!(taught.accuracy.unwrap() > 0.95, "teacher {taught:?}");

    // Every label says 0: alone, the student learns nothing; with alpha = 0 the step reads
    // the teacher's probabilities only, and the student sorts the digits as well as it can.
    let blind = unlabelled(&train);
    let alone = Trainer::new(config(20, None), Device::flex())
        .unwrap()
        .fit(student(2), &blind)
        .unwrap();
    let only_teacher = Distillation {
        temperature: 3.0,
        alpha: 0.0,
    };
    let distilled = Trainer::new(config(20, Some(only_teacher)), Device::flex())
        .unwrap()
        .with_teacher(teacher.clone())
        .fit(student(2), &blind)
        .unwrap();
    let (a, d) = (
        accuracy(&alone.model, &test),
        accuracy(&distilled.model, &test),
    );
    assert!(a < 0.15, "alone, on labels that are all 0: {a}");
    assert!(d > 0.9, "distilled from the teacher alone: {d}");
    // The recorded loss is the labels' own (here: wrong), on both splits.
    let last = distilled.history.epochs.last().unwrap();
    assert!(last.train_loss > 1.0 && last.val_loss > 1.0, "{last:?}");
}

#[test]
fn a_distilled_run_resumes_to_the_same_weights() {
    let _draws = DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let (train, _) = images_split();
    let teacher = teacher(&train);
    let dir = std::env::temp_dir().join(format!("kiln-distill-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = Some(Distillation::default());
    let run = |epochs: usize, checkpoints: Option<&std::path::Path>, resume: bool| {
        let mut trainer = Trainer::new(config(epochs, d), Device::flex())
            .unwrap()
            .with_teacher(teacher.clone());
        if let Some(dir) = checkpoints {
            trainer = trainer.with_checkpoints(dir);
        }
        if resume {
            trainer = trainer.resuming();
        }
        trainer.fit(student(3), &train).unwrap().model
    };
    let whole = run(4, None, false);
    run(2, Some(&dir), false);
    let resumed = run(4, Some(&dir), true);
    let weights = |m: &Mlp| values(m.hidden[0].linear.weight.val());
    assert_eq!(weights(&whole), weights(&resumed));
    let _ = std::fs::remove_dir_all(&dir);
    // The distilled student is not the one trained on the labels alone.
    let plain = Trainer::new(config(4, None), Device::flex())
        .unwrap()
        .fit(student(3), &train)
        .unwrap()
        .model;
    assert_ne!(weights(&whole), weights(&plain));
}

#[test]
fn a_teacher_without_settings_or_of_another_width_is_refused() {
    let (train, _) = images_split();
    let device = Device::flex();
    let err = Trainer::new(config(1, Some(Distillation::default())), device.clone())
        .unwrap()
        .fit(student(4), &train)
        .unwrap_err();
    assert!(err.to_string().contains("needs a teacher"), "{err}");
    let err = Trainer::new(config(1, None), device.clone())
        .unwrap()
        .with_teacher(student(5))
        .fit(student(4), &train)
        .unwrap_err();
    assert!(
        err.to_string().contains("no distillation settings"),
        "{err}"
    );
    let five = MlpConfig::new(64, vec![8], 5).init(&device);
    let err = Trainer::new(config(1, Some(Distillation::default())), device)
        .unwrap()
        .with_teacher(five)
        .fit(student(4), &train)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the teacher has 5 outputs for 10 classes"),
        "{err}"
    );
    let regression = TrainerConfig {
        distillation: Some(Distillation::default()),
        ..TrainerConfig::new(Task::Regression)
    };
    let err = Trainer::new(regression, Device::flex()).err().unwrap();
    assert!(err.to_string().contains("classification"), "{err}");
}
