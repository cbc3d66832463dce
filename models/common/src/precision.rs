//! The number format of the matrix products in kiln's fused CPU kernels: Keras's global
//! mixed-precision policy (`mixed_precision.set_global_policy("mixed_bfloat16")`), PyTorch's
//! `torch.autocast("cpu", dtype=torch.bfloat16)`.
//!
//! Under [`Precision::Bf16`] every product of the fused dense, convolution and LSTM kernels,
//! forward and backward, rounds its operands to bfloat16 and sums in float32
//! ([`matmul_bf16`](crate::amx::matmul_bf16): AMX tiles where the CPU has them, the rounded
//! operands multiplied in f32 otherwise). Everything else stays float32: the weights and the
//! optimiser's state (the master copy), the bias, activations, reductions, softmax, losses
//! and normalisation statistics, and every product Burn computes itself (the composed layers).
//!
//! Under [`Precision::F16`], for the GPU backends, the products Burn computes for kiln's layers
//! (linear maps, convolutions, the LSTM's gates, attention's scores and context) take float16
//! operands and give float32 results ([`crate::autocast`]); the rest stays float32 as above, and
//! the trainer scales the loss so that small gradients survive float16's range (PyTorch's
//! `GradScaler`, Keras's `LossScaleOptimizer`).
//!
//! The setting is process-wide, as Keras's policy is: [`PrecisionScope`] sets it for a
//! training run and restores the previous one after.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// The number format of the fused kernels' matrix products. Default: [`Precision::F32`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Float32 throughout.
    #[default]
    F32,
    /// Products of bfloat16 operands summed in float32; float32 master weights. kiln's fused
    /// CPU kernels.
    Bf16,
    /// Products of float16 operands with float32 results, float32 master weights and dynamic
    /// loss scaling. Burn's products on a GPU backend whose adapter has float16 shaders.
    F16,
}

impl Precision {
    /// Every precision's name, as `--precision` takes it.
    pub const NAMES: [&str; 3] = ["f32", "bf16", "f16"];

    /// The name `--precision` takes and `metrics.json` records.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    /// What computes this precision's products: `"f32"`, `"bf16 on AMX tiles"` or, for a CPU
    /// without AMX, `"bf16 rounding, f32 products"`, and `"f16 on the GPU, dynamic loss
    /// scaling"`.
    pub fn unit(self) -> &'static str {
        match (self, crate::amx::amx_available()) {
            (Precision::F32, _) => "f32",
            (Precision::Bf16, true) => "bf16 on AMX tiles",
            (Precision::Bf16, false) => "bf16 rounding, f32 products",
            (Precision::F16, _) => "f16 on the GPU, dynamic loss scaling",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A precision name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown precision `{0}` (expected f32, bf16 or f16)")]
pub struct UnknownPrecision(pub String);

impl std::str::FromStr for Precision {
    type Err = UnknownPrecision;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "f16" | "float16" | "half" => Ok(Precision::F16),
            _ => Err(UnknownPrecision(s.to_string())),
        }
    }
}

static CURRENT: AtomicU8 = AtomicU8::new(0);
static LOW_PRECISION_PRODUCTS: AtomicU64 = AtomicU64::new(0);

/// How many matrix products have run in bf16 or f16 in this process: what tells a trainer that
/// a bf16 or f16 run did compute in it (a model whose layers are all Burn's own would not).
pub fn low_precision_products() -> u64 {
    LOW_PRECISION_PRODUCTS.load(Ordering::Relaxed)
}

/// Counts one product in bf16 or f16.
pub(crate) fn count_low_precision_product() {
    LOW_PRECISION_PRODUCTS.fetch_add(1, Ordering::Relaxed);
}

/// The precision the fused kernels compute in now.
pub fn precision() -> Precision {
    match CURRENT.load(Ordering::Relaxed) {
        1 => Precision::Bf16,
        2 => Precision::F16,
        _ => Precision::F32,
    }
}

/// Sets the process-wide precision of the fused kernels' products.
pub fn set_precision(precision: Precision) {
    CURRENT.store(precision as u8, Ordering::Relaxed);
}

/// Sets a precision until dropped, then restores the one before.
pub struct PrecisionScope {
    before: Precision,
}

impl PrecisionScope {
    /// Sets `precision` until the scope is dropped.
    pub fn new(precision: Precision) -> Self {
        let before = self::precision();
        set_precision(precision);
        Self { before }
    }
}

impl Drop for PrecisionScope {
    fn drop(&mut self) {
        set_precision(self.before);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print() {
        for name in Precision::NAMES {
            let p: Precision = name.parse().unwrap();
            assert_eq!(p.to_string(), name);
        }
        assert_eq!("BF16".parse::<Precision>(), Ok(Precision::Bf16));
        assert_eq!("half".parse::<Precision>(), Ok(Precision::F16));
        let e = "f8".parse::<Precision>().unwrap_err().to_string();
        assert_eq!(e, "unknown precision `f8` (expected f32, bf16 or f16)");
        assert_eq!(serde_json::to_string(&Precision::Bf16).unwrap(), "\"bf16\"");
    }
}
