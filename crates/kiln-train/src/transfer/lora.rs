//! Low-rank adapters (LoRA: Hu et al., 2021; Keras 3's `enable_lora`, PEFT's `LoraConfig`):
//! every weight matrix `W` of the dense layers, attention projections and recurrent layers
//! becomes `W + (alpha / rank) A B` with `A` `[d_in, rank]` random and `B` `[rank, d_out]` zero,
//! so the model starts exactly as loaded; `W` and every other pre-trained parameter are frozen,
//! and only the factors train (and, in full, the parts named in [`LoraConfig::full`], such as a
//! new head: PEFT's `modules_to_save`). Built on Burn's `Module::apply_lora`.

use burn::module::{Lora, Module, ParamGroup};
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::transfer::init::param_group;

/// LoRA's settings: see the module documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// The factors' inner dimension. Must be at least 1.
    pub rank: usize,
    /// The adapters' scale is `alpha / rank`. Default (CLI): the rank, a scale of 1.
    pub alpha: f64,
    /// Module paths trained in full rather than through adapters (a new head). Default: none.
    #[serde(default)]
    pub full: Vec<String>,
}

impl LoraConfig {
    /// `rank` with `alpha` equal to it (a scale of 1), nothing trained in full.
    pub fn new(rank: usize) -> Self {
        Self {
            rank,
            alpha: rank as f64,
            full: Vec::new(),
        }
    }

    /// Checks the settings once, up front.
    pub fn check(&self) -> Result<(), TrainError> {
        if self.rank == 0 {
            return Err(TrainError::option("lora", "the rank must be at least 1"));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(TrainError::option(
                "lora",
                format!("alpha must be a positive number, got {}", self.alpha),
            ));
        }
        Ok(())
    }

    /// `model` with adapters on its weight matrices (not on embedding and position tables, nor
    /// on the parts in `full`), every other parameter frozen except those in `full`.
    pub fn apply<M: Module>(&self, model: M) -> Result<M, TrainError> {
        self.check()?;
        let tables = ParamGroup::from_any_regexes(vec![
            "(^|\\.)embedding(\\.|$)",
            "(^|\\.)positions(\\.|$)",
        ])
        .map_err(|e| TrainError::option("lora", format!("{e:?}")))?;
        let full = (!self.full.is_empty())
            .then(|| param_group(&self.full))
            .transpose()?;
        let mut adapted = ParamGroup::all().exclude(tables);
        if let Some(full) = &full {
            adapted = adapted.exclude(full.clone());
        }
        let model = model.apply_lora(Lora::new(self.rank, self.alpha).set_param_group(adapted));
        Ok(match full {
            Some(full) => model.unfreeze_group(full),
            None => model,
        })
    }
}

/// `model` with its adapters merged into the weights they adapt (`W + scale A B`): a plain model
/// of the original architecture, as `kiln eval` and `predict` load it.
pub fn merge_lora<M: Module>(model: M) -> M {
    model.materialize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::{GradientsParams, SgdConfig};
    use burn::tensor::{Device, Distribution, Tensor};
    use kiln_common::summary;
    use kiln_fnn::MlpConfig;

    #[test]
    fn adapters_start_at_zero_train_alone_and_merge_back() {
        let device = Device::flex();
        let mlp = MlpConfig::new(6, vec![5], 3).init(&device);
        let x = Tensor::<2>::random([4, 6], Distribution::Default, &device);
        let before = mlp.forward(x.clone());
        let adapted = LoraConfig::new(2).apply(mlp.clone()).unwrap();
        // B = 0: the adapted model is the loaded one.
        adapted
            .forward(x.clone())
            .into_data()
            .assert_approx_eq::<f32>(&before.into_data(), Default::default());
        // Only the factors train: (6 + 5) x 2 and (5 + 3) x 2.
        assert_eq!(summary(&adapted, &[6]).trainable, 22 + 16);

        let ad = device.clone().autodiff();
        let adapted = adapted.train().fork(&ad);
        let grads = adapted
            .forward(x.clone().fork(&ad))
            .powi_scalar(2)
            .sum()
            .backward();
        let layer = &adapted.hidden[0].linear.weight;
        assert!(
            layer.base().grad(&grads).is_none(),
            "the base weight is frozen"
        );
        let factor = &layer.adapter().unwrap().b;
        assert!(factor.val().grad(&grads).is_some(), "B gets a gradient");

        // One SGD step moves B off zero; merged, the weight is W + (alpha / rank) A B.
        let mut optim = SgdConfig::new().init();
        let grads = GradientsParams::from_grads(grads, &adapted);
        let stepped = optim.step(0.1, adapted, grads).valid();
        let adapter = stepped.output.weight.adapter().unwrap().clone();
        assert!(
            adapter.b.val().abs().max().into_scalar::<f32>() > 0.0,
            "B trained"
        );
        let want = stepped.output.weight.base() + adapter.a.val().matmul(adapter.b.val());
        let merged = merge_lora(stepped);
        assert!(merged.output.weight.adapter().is_none());
        merged
            .output
            .weight
            .val()
            .into_data()
            .assert_approx_eq::<f32>(&want.into_data(), Default::default());
        // A model of the original architecture loads the merged weights.
        let plain = MlpConfig::new(6, vec![5], 3)
            .init(&device)
            .load_record(merged.clone().into_record());
        plain
            .forward(x.clone())
            .into_data()
            .assert_approx_eq::<f32>(&merged.forward(x).into_data(), Default::default());
    }

    #[test]
    fn parts_trained_in_full_keep_no_adapter_and_train() {
        let device = Device::flex();
        let mlp = MlpConfig::new(6, vec![5], 3).init(&device);
        let config = LoraConfig {
            full: vec!["output".into()],
            ..LoraConfig::new(2)
        };
        let adapted = config.apply(mlp).unwrap();
        assert!(adapted.output.weight.adapter().is_none());
        // The hidden layer's factors, and the whole output layer (5 x 3 + 3).
        assert_eq!(summary(&adapted, &[6]).trainable, 22 + 18);
        let err = LoraConfig::new(0).apply(adapted).unwrap_err().to_string();
        assert!(err.contains("at least 1"), "{err}");
    }

    #[test]
    fn the_trainer_trains_the_factors_alone_and_returns_the_model_merged() {
        let device = Device::flex();
        let data = kiln_datasets::digits();
        let mlp = MlpConfig::new(64, vec![16], 10).init(&device);
        let config = crate::TrainerConfig {
            epochs: 2,
            verbosity: crate::Verbosity::Quiet,
            lora: Some(LoraConfig::new(2)),
            ..crate::TrainerConfig::new(crate::Task::Classification)
        };
        let fit = crate::Trainer::new(config, device)
            .unwrap()
            .fit(mlp.clone(), &data)
            .unwrap();
        let values = |t: Tensor<1>| t.into_data().try_to_vec::<f32>().unwrap();
        let (before, after) = (&mlp.hidden[0].linear, &fit.model.hidden[0].linear);
        assert!(after.weight.adapter().is_none(), "merged");
        assert_eq!(
            values(after.bias.as_ref().unwrap().val()),
            values(before.bias.as_ref().unwrap().val()),
            "a bias has no adapter: frozen"
        );
        let moved: f32 = (after.weight.val() - before.weight.val())
            .abs()
            .max()
            .into_scalar();
        assert!(moved > 1e-4, "the adapters trained: {moved}");
    }
}
