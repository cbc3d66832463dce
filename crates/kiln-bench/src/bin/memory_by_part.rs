//! `cargo run --release -p kiln-bench --bin memory_by_part -- --seq-len 1024`: where the memory
//! of one training step of the benchmark transformer goes (token ids -> embedding 32 + learned
//! positions -> post-norm encoder blocks, 2 heads, d_ff 32, dropout 0.1 -> mean pooling -> 2
//! classes, batch 64, Adam), measured by a counting allocator rather than computed from shapes.
//!
//! The forward pass runs part by part (the model's own layers, composed as the classifier
//! composes them; checked against its `forward` first). For each part the table gives the bytes
//! it leaves allocated, which is what it keeps for the backward pass plus its output, and the
//! highest the allocation rose above where the part started (its working set). Then the same
//! for the loss, the backward pass and Adam's first step, and the whole step's peak; after one
//! step on a copy of the model, so that what every step reuses is allocated already.

/// Counts every live byte; the allocator only observes, the figures do not depend on which one
/// kiln's binaries use.
#[global_allocator]
static ALLOCATOR: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

use anyhow::{Result, ensure};
use clap::Parser;
use kiln::burn::nn::loss::CrossEntropyLossConfig;
use kiln::burn::optim::{AdamConfig, GradientsParams};
use kiln::burn::tensor::{Int, TensorData};
use kiln::prelude::*;
use kiln::transformer::{Embed, Pooling, Positions, Tokens};
use rand::{RngExt, SeedableRng, rngs::StdRng};

const VOCAB: usize = 20_000;

#[derive(Debug, Parser)]
struct Args {
    /// Tokens per sequence.
    #[arg(long, default_value_t = 1024)]
    seq_len: usize,
    /// Sequences per batch.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Encoder blocks.
    #[arg(long, default_value_t = 1)]
    blocks: usize,
}

fn config(seq_len: usize, blocks: usize) -> SequenceClassifierConfig {
    SequenceClassifierConfig::new(32, 2)
        .with_n_heads(2)
        .with_d_ff(32)
        .with_n_blocks(blocks)
        .with_max_len(seq_len)
        .with_positions(Positions::Learned)
        .with_pooling(Pooling::Mean)
}

/// The classifier's forward pass, one part at a time, calling `mark` after each.
fn staged(
    model: &SequenceClassifier<Tokens>,
    ids: Tensor<2, Int>,
    mut mark: impl FnMut(String),
) -> Tensor<2> {
    let (x, padding) = model.input.embed(ids);
    let mut x = model.dropout.forward(model.positions.forward(x));
    mark("token embedding, positions, dropout".into());
    for (i, block) in model.encoder.blocks.iter().enumerate() {
        let attended = block
            .dropout
            .forward(block.self_attn.forward(x.clone(), padding.clone()));
        mark(format!("block {i}: self-attention (tiled), dropout"));
        x = block.norm1.forward(x + attended);
        mark(format!("block {i}: residual, layer norm 1"));
        let ff = block.feed_forward(x.clone());
        mark(format!("block {i}: feed-forward (2 dense, ReLU, dropout)"));
        x = block.norm2.forward(x + ff);
        mark(format!("block {i}: residual, layer norm 2"));
    }
    let [batch, seq, d_model] = x.dims();
    let pooled = match padding {
        None => x.mean_dim(1).reshape([batch, d_model]),
        Some(padding) => {
            let keep = padding.bool_not().float().reshape([batch, seq, 1]);
            let count = keep.clone().sum_dim(1).clamp_min(1.0);
            (x * keep).sum_dim(1).div(count).reshape([batch, d_model])
        }
    };
    let logits = model.head.forward(model.dropout.forward(pooled));
    mark("mean pooling, dropout, head".into());
    logits
}

/// The staged pass must be the model's: same logits without dropout, padding included.
fn check_staging(device: &Device) -> Result<()> {
    let model = config(16, 2).with_dropout(0.0).init_tokens(VOCAB, device);
    let mut ids = random_ids(3, 16, 1);
    for row in 1..3 {
        ids[row * 16 + 10..(row + 1) * 16].fill(0); // the last two sequences end in padding
    }
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [3, 16]), device);
    let want = model.forward(ids.clone());
    let got = staged(&model, ids, |_| {});
    let gap: f32 = (got - want).abs().max().into_scalar();
    ensure!(
        gap < 1e-5,
        "the staged forward pass is not the model's: {gap}"
    );
    Ok(())
}

fn random_ids(batch: usize, seq: usize, seed: u64) -> Vec<i64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..batch * seq)
        .map(|_| rng.random_range(1..VOCAB as i64))
        .collect()
}

/// Live bytes at the last mark, and one row per part since.
struct Meter {
    last: usize,
    rows: Vec<(String, f64, f64)>,
}

impl Meter {
    fn start() -> Self {
        ALLOCATOR.reset_peak_usage();
        Self {
            last: ALLOCATOR.current_usage(),
            rows: Vec::new(),
        }
    }

    /// Records the bytes left allocated since the last mark and the working set above it.
    fn mark(&mut self, part: String) {
        let now = ALLOCATOR.current_usage();
        let held = now as f64 - self.last as f64;
        let peak = (ALLOCATOR.peak_usage() - self.last) as f64;
        self.rows.push((part, held, peak));
        self.last = now;
        ALLOCATOR.reset_peak_usage();
    }
}

fn mb(bytes: f64) -> String {
    format!("{:.1}", bytes / 1e6)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = Device::flex();
    check_staging(&device)?;
    let ad = device.clone().autodiff();
    let model = config(args.seq_len, args.blocks)
        .init_tokens(VOCAB, &device)
        .train()
        .fork(&ad);
    let (batch, seq) = (args.batch_size, args.seq_len);
    let ids = random_ids(batch, seq, 0);
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, seq]), &ad);
    let labels: Vec<i64> = (0..batch as i64).map(|i| i % 2).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &ad);
    let mut optim = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);

    // One step first, on a copy, so that what persists after it (the thread pool's per-thread
    // scratch, caches) is allocated before counting; which threads take part in a step varies.
    let warm_up = loss_fn.forward(staged(&model.clone(), ids.clone(), |_| {}), targets.clone());
    drop(warm_up.backward());

    let base = ALLOCATOR.current_usage();
    let mut meter = Meter::start();
    let logits = staged(&model, ids, |part| meter.mark(part));
    let forward_held = meter.last - base;
    let loss = loss_fn.forward(logits, targets);
    meter.mark("cross-entropy loss".into());
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    meter.mark("backward pass (graph freed, gradients kept)".into());
    let gradients = meter.last as f64 - base as f64;
    let model = optim.step(1e-3, model, grads);
    meter.mark("Adam step (its first: the moments allocated)".into());
    let step_peak = meter
        .rows
        .iter()
        .fold((0.0f64, 0.0f64), |(level, peak), row| {
            (level + row.1, peak.max(level + row.2))
        });
    std::hint::black_box(&model);

    println!(
        "seq_len {seq}, batch {batch}, blocks {}; allocated before the step (model, input, \
         runtime): {} MB",
        args.blocks,
        mb(base as f64)
    );
    println!("| part | left allocated (MB) | working set above its start (MB) |");
    println!("|---|---:|---:|");
    for (part, held, peak) in &meter.rows {
        println!("| {part} | {} | {} |", mb(*held), mb(*peak));
    }
    println!(
        "| **forward pass, kept for the backward** | **{}** | |",
        mb(forward_held as f64)
    );
    println!(
        "| **gradients after the backward (embedding table's included)** | **{}** | |",
        mb(gradients)
    );
    println!(
        "| **whole step, peak above the start** | | **{}** |",
        mb(step_peak.1)
    );
    Ok(())
}
