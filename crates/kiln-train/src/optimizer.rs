use std::fmt;
use std::str::FromStr;

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, RmsPropConfig, SgdConfig};
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// The optimisation algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Stochastic gradient descent, with optional (Nesterov) momentum.
    Sgd,
    /// Adam; `weight_decay` adds an L2 penalty to the gradient.
    Adam,
    /// Adam with decoupled weight decay.
    AdamW,
    /// RMSprop, with optional momentum.
    RmsProp,
}

impl OptimizerKind {
    /// Every optimiser, in the order the CLI lists them.
    pub const ALL: [OptimizerKind; 4] = [
        OptimizerKind::Sgd,
        OptimizerKind::Adam,
        OptimizerKind::AdamW,
        OptimizerKind::RmsProp,
    ];

    /// The optimiser's name as the CLI spells it.
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Adam => "adam",
            OptimizerKind::AdamW => "adamw",
            OptimizerKind::RmsProp => "rmsprop",
        }
    }
}

impl fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OptimizerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OptimizerKind::ALL
            .into_iter()
            .find(|k| k.name() == s.to_ascii_lowercase())
            .ok_or_else(|| format!("unknown optimizer `{s}` (valid: sgd, adam, adamw, rmsprop)"))
    }
}

/// Gradient clipping, applied to each parameter's gradient before the update.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GradientClip {
    /// Clamp every component to `[-v, v]`.
    Value(f32),
    /// Rescale a gradient whose L2 norm exceeds `v` to norm `v`.
    Norm(f32),
}

/// Optimiser settings; the learning rate itself comes from the [`LrSchedule`](crate::LrSchedule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizerConfig {
    /// The algorithm. Default: Adam.
    pub kind: OptimizerKind,
    /// Momentum for SGD and RMSprop; 0 disables it. Default: 0.
    pub momentum: f64,
    /// Nesterov momentum (SGD with momentum > 0). Default: off.
    pub nesterov: bool,
    /// Weight decay: an L2 penalty `weight_decay * w` added to the gradient (SGD, Adam,
    /// RMSprop) or AdamW's decoupled decay. Default: 0.
    pub weight_decay: f64,
    /// Gradient clipping. Default: none.
    pub clip: Option<GradientClip>,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Adam,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            clip: None,
        }
    }
}

impl OptimizerConfig {
    /// Checks the settings once, up front.
    pub fn check(&self) -> Result<(), TrainError> {
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(TrainError::option(
                "momentum",
                format!("must lie in [0, 1), got {}", self.momentum),
            ));
        }
        if self.nesterov && (self.kind != OptimizerKind::Sgd || self.momentum == 0.0) {
            return Err(TrainError::option(
                "nesterov",
                "needs the sgd optimizer with momentum > 0",
            ));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(TrainError::option(
                "weight_decay",
                format!("must be >= 0, got {}", self.weight_decay),
            ));
        }
        if let Some(GradientClip::Value(v) | GradientClip::Norm(v)) = self.clip
            && !(v > 0.0 && v.is_finite())
        {
            return Err(TrainError::option("clip", format!("must be > 0, got {v}")));
        }
        Ok(())
    }

    /// Builds Burn's optimiser for a whole module.
    pub fn build(&self) -> ModuleOptimizer {
        let clip = self.clip.map(|c| match c {
            GradientClip::Value(v) => GradientClippingConfig::Value(v),
            GradientClip::Norm(v) => GradientClippingConfig::Norm(v),
        });
        let decay =
            (self.weight_decay > 0.0).then(|| WeightDecayConfig::new(self.weight_decay as f32));
        match self.kind {
            OptimizerKind::Sgd => SgdConfig::new()
                .with_weight_decay(decay)
                .with_momentum((self.momentum > 0.0).then_some(MomentumConfig {
                    momentum: self.momentum,
                    dampening: 0.0,
                    nesterov: self.nesterov,
                }))
                .with_gradient_clipping(clip)
                .init(),
            OptimizerKind::Adam => AdamConfig::new()
                .with_epsilon(1e-7)
                .with_weight_decay(decay)
                .with_grad_clipping(clip)
                .init(),
            OptimizerKind::AdamW => AdamWConfig::new()
                .with_epsilon(1e-7)
                .with_weight_decay(self.weight_decay as f32)
                .with_grad_clipping(clip)
                .init(),
            OptimizerKind::RmsProp => RmsPropConfig::new()
                .with_momentum(self.momentum as f32)
                .with_epsilon(1e-7)
                .with_weight_decay(decay)
                .with_grad_clipping(clip)
                .init(),
        }
    }
}
