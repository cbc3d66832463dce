//! kiln on the GPU backend: every model family trains on wgpu as it does on flex, the CPU
//! backend whose results the other tests check. Where there is no GPU, wgpu runs on Mesa's
//! lavapipe software Vulkan (`apt-get install mesa-vulkan-drivers`).
//!
//! `cargo test --release -p kiln --features wgpu --test wgpu`

#![cfg(feature = "wgpu")]

use kiln::burn::module::Module;
use kiln::burn::tensor::{Device, DeviceKind, Tensor, TensorData};
use kiln::cnn::{CnnConfig, ConvBlockConfig, Padding, Pool};
use kiln::common::Model;
use kiln::datasets::{Data, digits};
use kiln::fnn::{MlpConfig, PerceptronConfig};
use kiln::lstm::{Cell, SequenceModelConfig};
use kiln::train::{Task, Trainer, TrainerConfig, Verbosity, evaluate, predict};
use kiln::transformer::SequenceClassifierConfig;

/// The precision is process-wide (as Keras's policy is) and an f16 run sets it while it trains:
/// the tests take turns, so that none computes in another's precision.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn gpu() -> Device {
    Device::wgpu(DeviceKind::DefaultDevice)
}

/// The first `n` digits for training and the next 200 for testing, pixels in [0, 1], each
/// sample shaped `shape`.
fn digit_parts(n: usize, shape: &[usize]) -> (Data, Data) {
    let mut all = digits();
    all.x.iter_mut().for_each(|v| *v /= 16.0);
    let all = Data::new(all.x, shape.to_vec(), all.y).unwrap();
    let train: Vec<usize> = (0..n).collect();
    let test: Vec<usize> = (n..n + 200).collect();
    (all.subset(&train), all.subset(&test))
}

/// The digits as sequences of 8 token ids (a row's pixel sum, 0..=16).
fn digit_tokens(n: usize) -> (Data, Data) {
    let (train, test) = digit_parts(n, &[64]);
    let tokens = |d: Data| {
        let ids: Vec<f32> =
            d.x.chunks(8)
                .map(|row| (row.iter().sum::<f32>() * 2.0).round())
                .collect();
        Data::new(ids, vec![8], d.y).unwrap()
    };
    (tokens(train), tokens(test))
}

fn config(epochs: usize) -> TrainerConfig {
    TrainerConfig {
        epochs,
        batch_size: 32,
        lr: 1e-2,
        validation_split: 0.25,
        verbosity: Verbosity::Quiet,
        ..TrainerConfig::new(Task::Classification)
    }
}

/// A small CNN for the 1x8x8 digits: one padded convolution of 8 channels, max-pooled, and a
/// dense head of 32.
fn digits_cnn() -> CnnConfig {
    CnnConfig::new(
        1,
        [8, 8],
        vec![
            ConvBlockConfig::new([1, 8])
                .with_padding(Padding::Same)
                .with_pool(Some(Pool::Max)),
        ],
        vec![32],
        10,
    )
}

fn largest_difference(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.concat()
        .iter()
        .zip(b.concat())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Makes the model on flex from seed 1, copies it to the GPU, and checks that both backends
/// give the same outputs, then the same trained model after `epochs` (no dropout: the
/// backends draw different random numbers). Returns the test loss before and after training
/// on the GPU.
fn train_on_both<M: Model>(
    name: &str,
    make: impl Fn(&Device) -> M,
    (train, test): (Data, Data),
    epochs: usize,
    tolerance: f32,
) -> (f64, f64) {
    let (flex, gpu) = (Device::flex(), gpu());
    flex.seed(1);
    let on_flex = make(&flex);
    let on_gpu = on_flex.clone().fork(&gpu);
    let (before_flex, before_gpu) = (
        predict(&on_flex, &test, 64, &flex),
        predict(&on_gpu, &test, 64, &gpu),
    );
    let diff = largest_difference(&before_flex, &before_gpu);
    assert!(
        diff < 1e-4,
        "{name}: outputs differ by {diff} before training"
    );
    let loss_before = evaluate(&on_gpu, &test, Task::Classification, 64, &gpu).loss;

    let fit = |model: M, device: &Device| {
        Trainer::new(config(epochs), device.clone())
            .unwrap()
            .fit(model, &train)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .model
    };
    let (trained_flex, trained_gpu) = (fit(on_flex, &flex), fit(on_gpu, &gpu));
    let after = predict(&trained_gpu, &test, 64, &gpu);
    assert!(after.concat().iter().all(|v| v.is_finite()), "{name}");
    let diff = largest_difference(&predict(&trained_flex, &test, 64, &flex), &after);
    eprintln!("{name}: flex and wgpu differ by {diff:e} after training");
    assert!(
        diff < tolerance,
        "{name}: trained outputs differ by {diff} (tolerance {tolerance})"
    );
    let loss_after = evaluate(&trained_gpu, &test, Task::Classification, 64, &gpu).loss;
    (loss_before, loss_after)
}

/// The MLP and the CNN, an epoch each on 900 digits (22 Adam steps): the test loss falls (by
/// 60% and 40% here), and the GPU's first outputs and trained model equal flex's. The two backends sum in
/// different orders (GPU reductions are tree-shaped, flex's sequential), which left differences
/// of 1e-6 (MLP) and 4e-6 (CNN) in the logits on lavapipe (measured); 1e-3 allows for other GPUs' arithmetic
/// while catching a real difference in a kernel (a wrong gradient moves them by 1e-1 and more).
#[test]
fn the_mlp_and_the_cnn_train_an_epoch_on_wgpu_as_on_flex() {
    let _turn = take_turn();
    let (before, after) = train_on_both(
        "mlp",
        |d| MlpConfig::new(64, vec![64], 10).init(d),
        digit_parts(900, &[64]),
        1,
        1e-3,
    );
    assert!(after < before * 0.5, "mlp: test loss {before} -> {after}");
    let cnn = digits_cnn();
    let (before, after) = train_on_both(
        "cnn",
        |d| cnn.init(d),
        digit_parts(900, &[1, 8, 8]),
        1,
        1e-3,
    );
    assert!(after < before * 0.7, "cnn: test loss {before} -> {after}");
}

/// A NaN pixel in every image: the run stops at its first batch with a non-finite loss
/// on both backends. kiln's fused CPU kernels (dense, convolution, max-pool) keep the NaN as
/// Burn's GPU operations do; they used to map it to 0 through ReLU, and the MLP and the CNN then
/// trained on with NaN weights, a finite loss and no error, on flex only.
#[test]
fn a_nan_pixel_stops_training_on_wgpu_as_on_flex() {
    let _turn = take_turn();
    let cnn = digits_cnn();
    for device in [Device::flex(), gpu()] {
        for shape in [vec![64], vec![1, 8, 8]] {
            let (mut train, _) = digit_parts(300, &shape);
            train
                .x
                .chunks_mut(64)
                .for_each(|pixels| pixels[20] = f32::NAN);
            let trainer = Trainer::new(config(2), device.clone()).unwrap();
            let fit = if shape.len() == 1 {
                trainer
                    .fit(MlpConfig::new(64, vec![32], 10).init(&device), &train)
                    .map(|_| ())
            } else {
                trainer.fit(cnn.init(&device), &train).map(|_| ())
            };
            let Err(kiln::train::TrainError::NonFiniteLoss { epoch, batch, .. }) = fit else {
                panic!("{device:?} {shape:?}: trained on NaN pixels without an error");
            };
            assert_eq!((epoch, batch), (1, 1), "{device:?} {shape:?}");
        }
    }
}

/// Every other family, including the LSTM's composed path (the fused LSTM is a CPU operation:
/// on wgpu the same layer runs as Burn operations), GRU, bidirectional layers and the
/// transformer over tokens and over real-valued steps: two steps each, same results as flex.
#[test]
fn every_model_family_trains_on_wgpu_as_on_flex() {
    let _turn = take_turn();
    let seq = |cell, bidirectional| {
        SequenceModelConfig::new(8, 16, 10)
            .with_cell(cell)
            .with_bidirectional(bidirectional)
    };
    for (name, cell, bidirectional) in [
        ("lstm", Cell::Lstm, false),
        ("bilstm", Cell::Lstm, true),
        ("gru", Cell::Gru, false),
    ] {
        let config = seq(cell, bidirectional);
        train_on_both(name, |d| config.init(d), digit_parts(80, &[8, 8]), 1, 1e-3);
    }
    let transformer = SequenceClassifierConfig::new(16, 10)
        .with_d_ff(32)
        .with_n_blocks(1)
        .with_dropout(0.0);
    train_on_both(
        "transformer over tokens",
        |d| transformer.init_tokens(17, d),
        digit_tokens(80),
        1,
        1e-3,
    );
    train_on_both(
        "transformer over steps",
        |d| transformer.init_features(8, d),
        digit_parts(80, &[8, 8]),
        1,
        1e-3,
    );
}

#[test]
fn the_perceptron_classifies_on_wgpu_as_on_flex() {
    let _turn = take_turn();
    // The perceptron rule updates on the host; its predictions run on the weights' device.
    let (flex, gpu) = (Device::flex(), gpu());
    let (train, _) = digit_parts(200, &[64]);
    let x = |d: &Device| Tensor::<2>::from_data(TensorData::new(train.x.clone(), [200, 64]), d);
    let zeros: Vec<i64> = train
        .y
        .labels()
        .unwrap()
        .iter()
        .map(|&l| (l == 0) as i64)
        .collect();
    let mut perceptron = PerceptronConfig::new(64).init(&flex);
    let fit = perceptron.fit(
        x(&flex),
        Tensor::from_data(TensorData::new(zeros, [200]), &flex),
        20,
    );
    assert!(
        fit.converged,
        "zeros are separable from the other digits: {fit:?}"
    );
    let on_flex: Vec<f32> = perceptron
        .forward(x(&flex))
        .into_data()
        .try_to_vec()
        .unwrap();
    let on_gpu: Vec<f32> = perceptron
        .fork(&gpu)
        .forward(x(&gpu))
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(on_flex, on_gpu);
    assert!(
        on_flex.contains(&0.0) && on_flex.contains(&1.0),
        "{on_flex:?}"
    );
}

#[test]
fn dropout_draws_its_mask_on_the_gpu() {
    let _turn = take_turn();
    // On flex and ndarray the mask is a hashed host-side pass; on wgpu Burn's random tensor.
    let device = gpu().autodiff();
    let dropout = kiln::common::DropoutConfig::new(0.25).init();
    let x = Tensor::<2>::ones([64, 1000], &device).require_grad();
    let y = dropout.forward(x.clone());
    let values: Vec<f32> = y.clone().into_data().try_to_vec().unwrap();
    let zeros = values.iter().filter(|&&v| v == 0.0).count() as f64 / values.len() as f64;
    assert!(
        (zeros - 0.25).abs() < 0.02,
        "{zeros} of the elements dropped"
    );
    assert!(
        values
            .iter()
            .all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6),
        "kept elements are scaled by 1 / (1 - p)"
    );
    // The gradient is the mask itself: the same elements, the same scale.
    let grads = y.sum().backward();
    let grad: Vec<f32> = x.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
    assert_eq!(grad, values);
}

fn f16(config: TrainerConfig) -> TrainerConfig {
    TrainerConfig {
        precision: kiln::common::Precision::F16,
        ..config
    }
}

/// Trains `make`'s model (made on the GPU from seed 1) for `epochs` in f32 and in f16 from the
/// same weights; returns both test losses, the largest difference of their test outputs, and
/// the f16 run's history.
fn f32_and_f16<M: Model>(
    name: &str,
    make: impl Fn(&Device) -> M,
    (train, test): (Data, Data),
    epochs: usize,
) -> (f64, f64, f32, kiln::train::History) {
    let gpu = gpu();
    gpu.seed(1);
    let model = make(&gpu);
    let fit = |config: TrainerConfig| {
        Trainer::new(config, gpu.clone())
            .unwrap()
            .fit(model.clone(), &train)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    // Before training: the forward pass alone, in each precision.
    let first = |precision| {
        let _scope = kiln::common::PrecisionScope::new(precision);
        predict(&model, &test, 64, &gpu)
    };
    let (a, b) = (
        first(kiln::common::Precision::F32),
        first(kiln::common::Precision::F16),
    );
    let (diff, size) = (
        largest_difference(&a, &b),
        a.concat().iter().fold(0f32, |m, v| m.max(v.abs())),
    );
    eprintln!("{name}: untrained outputs (largest {size:.3}) differ by {diff:e} in f16");
    assert!(
        diff > 0.0 && diff < 2e-3 * size.max(1.0),
        "{name}: untrained outputs differ by {diff}"
    );
    let products = kiln::common::precision::low_precision_products();
    let (full, half) = (fit(config(epochs)), fit(f16(config(epochs))));
    assert!(
        kiln::common::precision::low_precision_products() > products,
        "{name}: no product ran in f16"
    );
    let outputs = |m: &M| predict(m, &test, 64, &gpu);
    let (a, b) = (outputs(&full.model), outputs(&half.model));
    assert!(b.concat().iter().all(|v| v.is_finite()), "{name}");
    let loss = |m: &M| evaluate(m, &test, Task::Classification, 64, &gpu).loss;
    let diff = largest_difference(&a, &b);
    let (l32, l16) = (loss(&full.model), loss(&half.model));
    eprintln!("{name}: test loss f32 {l32:.4}, f16 {l16:.4}; outputs differ by {diff:e}");
    (l32, l16, diff, half.history)
}

/// Every family in f16 (float16 products, f32 weights, loss scaling) against f32 on the GPU,
/// from the same weights. Untrained, the outputs differ by float16's rounding (1.3e-4 to
/// 4.8e-4 measured on lavapipe, at most 2e-3 of their size allowed), and not by nothing (a
/// product left in f32). Trained for an epoch, the test losses are within 3% of each other
/// (0.0% to 0.45% measured): not the logits, which Adam pulls apart where a gradient near zero
/// changes sign with the rounding (each such weight then moves a whole step the other way; the
/// transformer's logits ended 0.28 apart at equal loss). Each epoch's record keeps the loss
/// scale and the steps skipped (one of the transformer's overflowed float16 at 2^16 here).
#[test]
fn every_model_family_trains_in_f16_on_wgpu_as_in_f32() {
    let _turn = take_turn();
    let seq = |bidirectional| SequenceModelConfig::new(8, 16, 10).with_bidirectional(bidirectional);
    let gru = SequenceModelConfig::new(8, 16, 10).with_cell(Cell::Gru);
    let transformer = SequenceClassifierConfig::new(16, 10)
        .with_d_ff(32)
        .with_n_blocks(1)
        .with_dropout(0.0);
    let cnn = digits_cnn();
    let runs = [
        f32_and_f16(
            "mlp",
            |d| MlpConfig::new(64, vec![64], 10).init(d),
            digit_parts(900, &[64]),
            1,
        ),
        f32_and_f16("cnn", |d| cnn.init(d), digit_parts(900, &[1, 8, 8]), 1),
        f32_and_f16("lstm", |d| seq(false).init(d), digit_parts(300, &[8, 8]), 1),
        f32_and_f16(
            "bilstm",
            |d| seq(true).init(d),
            digit_parts(300, &[8, 8]),
            1,
        ),
        f32_and_f16("gru", |d| gru.init(d), digit_parts(300, &[8, 8]), 1),
        f32_and_f16(
            "transformer",
            |d| transformer.init_tokens(17, d),
            digit_tokens(300),
            1,
        ),
    ];
    for (l32, l16, diff, history) in runs {
        assert!(
            (l16 - l32).abs() < 0.03 * l32,
            "test loss f32 {l32}, f16 {l16}"
        );
        assert!(diff > 0.0, "the trained outputs are f32's");
        let record = &history.epochs[0];
        // Each skipped step halved the scale; none of these short runs reaches 2000 steps.
        let (scale, skipped) = (
            record.metrics["loss_scale"],
            record.metrics["skipped_steps"],
        );
        assert_eq!(scale * 2f64.powf(skipped), 65_536.0, "{record:?}");
        assert!(skipped <= 2.0, "{record:?}");
    }
}

/// The digits' pixels times 400 make gradients that overflow float16 at the first scale (2^16):
/// those steps are skipped and the scale halves until they fit; training goes on to a lower
/// loss. A run killed after its first epoch resumes with the scale its checkpoint kept, to the
/// same weights as the run that was not stopped.
#[test]
fn f16_skips_overflowing_steps_backs_off_and_resumes_with_its_scale() {
    let _turn = take_turn();
    let gpu = gpu();
    let (mut train, _) = digit_parts(600, &[64]);
    train.x.iter_mut().for_each(|v| *v *= 400.0);
    gpu.seed(1);
    let model = MlpConfig::new(64, vec![32], 10).init(&gpu);
    let dir = std::env::temp_dir().join(format!("kiln-wgpu-f16-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = |epochs: usize, checkpoints: &std::path::Path, resume: bool| {
        let config = TrainerConfig {
            lr: 1e-3,
            ..f16(config(epochs))
        };
        let mut trainer = Trainer::new(config, gpu.clone())
            .unwrap()
            .with_checkpoints(checkpoints);
        if resume {
            trainer = trainer.resuming();
        }
        trainer.fit(model.clone(), &train).unwrap()
    };
    let whole = run(2, &dir.join("whole"), false);
    let epochs = &whole.history.epochs;
    let (first, second) = (&epochs[0].metrics, &epochs[1].metrics);
    eprintln!("f16 with overflows: {first:?} then {second:?}");
    assert!(first["skipped_steps"] >= 1.0, "{first:?}");
    assert!(first["loss_scale"] < 65_536.0, "{first:?}");
    assert!(epochs[1].train_loss < epochs[0].train_loss, "{epochs:?}");
    let params = |m: &kiln::fnn::Mlp| -> Vec<f32> {
        m.hidden[0]
            .linear
            .weight
            .val()
            .into_data()
            .iter::<f32>()
            .collect()
    };
    assert!(params(&whole.model).iter().all(|v| v.is_finite()));

    run(1, &dir.join("resumed"), false);
    let resumed = run(2, &dir.join("resumed"), true);
    assert_eq!(resumed.history.epochs[1].metrics, *second);
    assert_eq!(params(&resumed.model), params(&whole.model));
    std::fs::remove_dir_all(dir).unwrap();
}
