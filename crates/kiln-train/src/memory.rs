//! What a model's parameters cost in memory and on disk, counted before any is allocated: a
//! model too large for this machine is an error with its size, not an abort deep in an
//! allocator. Burn's parameters are initialised lazily, so [`Module::num_params`] of a freshly
//! made model reads their shapes without allocating them.
//!
//! [`Module::num_params`]: burn::module::Module::num_params

use crate::{OptimizerConfig, OptimizerKind, TrainError};

/// Bytes of an `f32` parameter.
const F32: u64 = 4;

/// Tensors of the parameters' size an optimiser keeps between steps: Adam's two moments,
/// RMSprop's square average (and its momentum), SGD's momentum.
pub fn optimizer_slots(optimizer: &OptimizerConfig) -> u64 {
    let momentum = u64::from(optimizer.momentum > 0.0);
    match optimizer.kind {
        OptimizerKind::Adam | OptimizerKind::AdamW => 2,
        OptimizerKind::RmsProp => 1 + momentum,
        OptimizerKind::Sgd => momentum,
    }
}

/// Bytes a training step holds for `n_params` parameters: the weights, their gradients and the
/// optimiser's state (activations come on top, and grow with the batch).
pub fn training_bytes(n_params: usize, optimizer: &OptimizerConfig) -> u64 {
    n_params as u64 * F32 * (2 + optimizer_slots(optimizer))
}

/// Bytes of one checkpoint, at most: the weights, the best epoch's weights (kept when early
/// stopping restores them or the best is saved) and the optimiser's state.
pub fn checkpoint_bytes(n_params: usize, optimizer: &OptimizerConfig) -> u64 {
    n_params as u64 * F32 * (2 + optimizer_slots(optimizer))
}

/// Bytes of the weights alone.
pub fn weight_bytes(n_params: usize) -> u64 {
    n_params as u64 * F32
}

/// The memory this machine can give a process now (Linux's `MemAvailable`); `None` where it
/// cannot be read.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A size in the unit a person reads it in: `1.4 GB`, `380 MB`, `12 kB`.
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.0} kB", b / 1e3),
        1_000_000..1_000_000_000 => format!("{:.0} MB", b / 1e6),
        1_000_000_000..1_000_000_000_000 => format!("{:.1} GB", b / 1e9),
        _ => format!("{:.1} TB", b / 1e12),
    }
}

/// Errs when `needed` bytes (for `what`: "training needs", "its weights need") exceed the memory
/// available (`available`, or this machine's when `None` is given and it can be read).
pub fn check_memory(
    n_params: usize,
    needed: u64,
    what: &'static str,
    available: Option<u64>,
) -> Result<(), TrainError> {
    match available.or_else(available_memory) {
        Some(available) if needed > available => Err(TrainError::ModelTooLarge {
            n_params,
            what,
            needed: human_bytes(needed),
            available: human_bytes(available),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_count_weights_gradients_and_the_optimisers_state() {
        let adam = OptimizerConfig::default();
        assert_eq!(adam.kind, OptimizerKind::Adam);
        // 1,000 parameters: 4 kB of weights; Adam's step holds weights, gradients and two
        // moments (16 kB); its checkpoint the weights, the best weights and the moments.
        assert_eq!(weight_bytes(1_000), 4_000);
        assert_eq!(training_bytes(1_000, &adam), 16_000);
        assert_eq!(checkpoint_bytes(1_000, &adam), 16_000);
        let sgd = OptimizerConfig {
            kind: OptimizerKind::Sgd,
            ..adam.clone()
        };
        assert_eq!(training_bytes(1_000, &sgd), 8_000);
        let momentum = OptimizerConfig {
            momentum: 0.9,
            ..sgd
        };
        assert_eq!(checkpoint_bytes(1_000, &momentum), 12_000);
        assert_eq!(human_bytes(1_400_000_000), "1.4 GB");
        assert_eq!(human_bytes(400_000_000_000), "400.0 GB");
    }

    #[test]
    fn a_model_larger_than_the_memory_is_an_error_with_its_size() {
        let e = check_memory(
            100_000_000_650,
            400_000_002_600,
            "its weights need",
            Some(8_000_000_000),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "the model has 100,000,000,650 parameters: its weights need about 400.0 GB, more \
             than the 8.0 GB of memory available; make it smaller (fewer or narrower layers)"
        );
        assert!(check_memory(10, 40, "training needs", Some(1_000)).is_ok());
        assert!(
            available_memory().is_some_and(|m| m > 0),
            "Linux has /proc/meminfo"
        );
    }
}
