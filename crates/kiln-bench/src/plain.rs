//! The baseline: a training loop written by hand on Burn alone, as a Burn tutorial writes it.

use std::sync::Arc;

use kiln::burn::data::dataloader::batcher::Batcher;
use kiln::burn::nn::loss::CrossEntropyLossConfig;
use kiln::burn::optim::{AdamConfig, GradientsParams};
use kiln::burn::tensor::Device;
use kiln::common::Model;
use kiln::datasets::Data;
use kiln::train::{BatchTargets, DataBatcher, TrainerConfig};
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

/// Trains `model` for `config.epochs` epochs with Adam at `config.lr`: shuffled mini-batches,
/// cross-entropy, backward, step; then a validation pass computing loss and accuracy.
pub fn train<M: Model>(
    model: M,
    train: &Arc<Data>,
    valid: &Arc<Data>,
    config: &TrainerConfig,
    device: &Device,
) -> M {
    let ad = device.clone().autodiff();
    let mut model = model.train().fork(&ad);
    let mut optim = AdamConfig::new().with_epsilon(1e-7).init();
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    let train_batcher = DataBatcher::<M::Input>::new(train.clone());
    let valid_batcher = DataBatcher::<M::Input>::new(valid.clone());
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut order: Vec<usize> = (0..train.len()).collect();

    for _ in 0..config.epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(config.batch_size) {
            let batch = train_batcher.batch(chunk.to_vec(), &ad);
            let BatchTargets::Classes(targets) = batch.targets else {
                unreachable!("classes")
            };
            let loss = loss_fn.forward(model.forward(batch.inputs), targets);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(config.lr, model, grads);
        }
        let eval = model.valid();
        let (mut loss_sum, mut correct) = (0.0f64, 0i64);
        let indices: Vec<usize> = (0..valid.len()).collect();
        for chunk in indices.chunks(config.batch_size) {
            let batch = valid_batcher.batch(chunk.to_vec(), device);
            let BatchTargets::Classes(targets) = batch.targets else {
                unreachable!("classes")
            };
            let logits = eval.forward(batch.inputs);
            loss_sum += CrossEntropyLossConfig::new()
                .init(device)
                .forward(logits.clone(), targets.clone())
                .into_scalar::<f32>() as f64;
            correct += logits
                .argmax(1)
                .squeeze_dim::<1>(1)
                .equal(targets)
                .int()
                .sum()
                .into_scalar::<i64>();
        }
        std::hint::black_box((loss_sum, correct));
    }
    model
}
