//! BERT's masked-language objective on the data side: which tokens of a batch are hidden and
//! what the model must say they were.

use rand::seq::index::sample;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// Id of padding in token data (never chosen, never drawn as a replacement).
const PAD: usize = 0;
/// Ids below this are padding and the unknown token; random replacements are real tokens.
const FIRST_TOKEN: usize = 2;

/// Pre-training an encoder on text without labels (BERT's masked-language model): in every
/// batch, `rate` of each text's tokens are chosen (at least one), 80% of them replaced by
/// `mask_id`, 10% by a random token and 10% left as they are; the model predicts the original
/// token at each chosen position, and its loss and accuracy are over those positions alone.
///
/// The choice is drawn from the run's seed and the batch's samples, so a batch is masked the
/// same way whichever thread builds it, a resumed run as the uninterrupted one, and the
/// validation texts the same way every epoch (their loss compares across epochs); a training
/// text gets new masks each epoch as it lands in new batches (RoBERTa's dynamic masking).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MaskedLm {
    /// Fraction of each text's tokens (padding excluded) predicted. Default: 0.15 (BERT's).
    pub rate: f64,
    /// The id that hides a chosen token: the vocabulary's `<mask>`.
    pub mask_id: usize,
    /// The vocabulary's size: random replacements are ids in `[2, vocab_size)` other than
    /// `mask_id` (0 and 1 are padding and the unknown token).
    pub vocab_size: usize,
    /// Seeds the choices (the CLI gives the run's `--seed`). Default: 0.
    pub seed: u64,
}

impl MaskedLm {
    /// BERT's rate, 0.15, for a vocabulary of `vocab_size` ids whose `<mask>` is `mask_id`.
    pub fn new(mask_id: usize, vocab_size: usize) -> Self {
        Self {
            rate: 0.15,
            mask_id,
            vocab_size,
            seed: 0,
        }
    }

    /// Checks the settings once, up front.
    pub fn check(&self) -> Result<(), TrainError> {
        if !(self.rate > 0.0 && self.rate < 1.0) {
            return Err(TrainError::option(
                "mask_rate",
                format!("must lie strictly between 0 and 1, got {}", self.rate),
            ));
        }
        if self.mask_id < FIRST_TOKEN || self.mask_id >= self.vocab_size {
            return Err(TrainError::option(
                "masked_lm",
                format!(
                    "the mask id {} must be a token of the vocabulary [2, {})",
                    self.mask_id, self.vocab_size
                ),
            ));
        }
        if self.vocab_size < FIRST_TOKEN + 2 {
            return Err(TrainError::option(
                "masked_lm",
                format!(
                    "a vocabulary of {} ids has no token to predict beside padding, the \
                     unknown token and the mask",
                    self.vocab_size
                ),
            ));
        }
        Ok(())
    }

    /// Masks `texts` (row-major, `seq` ids each, as whole-number floats): samples of shape
    /// `[2, seq]` (the ids with the chosen ones replaced, then 1 at each chosen position, as
    /// `kiln_transformer::MaskedTokens` reads them) and the original token of
    /// every chosen position, text by text. `key` names the batch (its sample indices).
    pub fn apply(&self, texts: &[f32], seq: usize, key: u64) -> (Vec<f32>, Vec<i64>) {
        let mut rng = StdRng::seed_from_u64(self.seed ^ key.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut out = Vec::with_capacity(texts.len() * 2);
        let mut targets = Vec::new();
        for text in texts.chunks(seq) {
            let (mut ids, mut marks) = (text.to_vec(), vec![0.0f32; seq]);
            let real: Vec<usize> = (0..seq).filter(|&p| text[p] as usize != PAD).collect();
            // A text of padding alone still gives its batch a position to score.
            let pool = if real.is_empty() { vec![0] } else { real };
            let n = ((self.rate * pool.len() as f64).round() as usize).clamp(1, pool.len());
            let mut chosen: Vec<usize> = sample(&mut rng, pool.len(), n)
                .into_iter()
                .map(|i| pool[i])
                .collect();
            chosen.sort_unstable();
            for p in chosen {
                targets.push(text[p] as i64);
                marks[p] = 1.0;
                let u: f64 = rng.random();
                if u < 0.8 {
                    ids[p] = self.mask_id as f32;
                } else if u < 0.9 {
                    ids[p] = self.random_token(&mut rng) as f32;
                }
            }
            out.extend(ids);
            out.extend(marks);
        }
        (out, targets)
    }

    /// A token id in `[2, vocab_size)` other than the mask.
    fn random_token(&self, rng: &mut StdRng) -> usize {
        let id = rng.random_range(FIRST_TOKEN..self.vocab_size - 1);
        if id >= self.mask_id { id + 1 } else { id }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 400 texts of 50 tokens, the last 10 of each padding.
    fn texts() -> Vec<f32> {
        (0..400)
            .flat_map(|t| {
                (0..50).map(move |p| {
                    if p < 40 {
                        (2 + (t * 7 + p) % 90) as f32
                    } else {
                        0.0
                    }
                })
            })
            .collect()
    }

    #[test]
    fn fifteen_percent_of_the_tokens_split_eighty_ten_ten() {
        let masking = MaskedLm::new(99, 100);
        let texts = texts();
        let (out, targets) = masking.apply(&texts, 50, 7);
        assert_eq!(out.len(), texts.len() * 2);
        // round(0.15 * 40) = 6 chosen per text, never padding, targets the originals.
        assert_eq!(targets.len(), 400 * 6);
        let (mut masked, mut random, mut kept, mut k) = (0, 0, 0, 0);
        for (t, text) in texts.chunks(50).enumerate() {
            let (ids, marks) = out[t * 100..(t + 1) * 100].split_at(50);
            assert_eq!(marks.iter().filter(|&&m| m == 1.0).count(), 6);
            for p in 0..50 {
                if marks[p] == 0.0 {
                    assert_eq!(ids[p], text[p], "unchosen tokens are kept");
                    continue;
                }
                assert!(p < 40, "padding is never chosen");
                assert_eq!(targets[k], text[p] as i64);
                k += 1;
                match ids[p] {
                    99.0 => masked += 1,
                    id if id == text[p] => kept += 1,
                    id => {
                        assert!((2.0..99.0).contains(&id), "a real token: {id}");
                        random += 1;
                    }
                }
            }
        }
        // 2,400 draws: 80/10/10 within a few standard deviations (sd of 10% is 0.6 points);
        // a random replacement equal to the original counts as kept (1 in 97).
        let share = |n: usize| n as f64 / 2400.0;
        assert!((share(masked) - 0.8).abs() < 0.03, "{masked}");
        assert!((share(random) - 0.1).abs() < 0.025, "{random}");
        assert!((share(kept) - 0.1).abs() < 0.025, "{kept}");
    }

    #[test]
    fn a_batch_is_masked_the_same_way_for_the_same_key_and_differently_for_another() {
        let masking = MaskedLm::new(99, 100);
        let texts = texts();
        assert_eq!(masking.apply(&texts, 50, 3), masking.apply(&texts, 50, 3));
        assert_ne!(masking.apply(&texts, 50, 3), masking.apply(&texts, 50, 4));
        let reseeded = MaskedLm { seed: 1, ..masking };
        assert_ne!(masking.apply(&texts, 50, 3), reseeded.apply(&texts, 50, 3));
    }

    #[test]
    fn short_texts_get_one_chosen_token_and_padding_alone_its_first_position() {
        let masking = MaskedLm::new(5, 6);
        let (out, targets) = masking.apply(&[3.0, 0.0, 0.0, 0.0, 0.0, 0.0], 3, 1);
        assert_eq!(&out[3..6], &[1.0, 0.0, 0.0]);
        assert_eq!(&out[9..12], &[1.0, 0.0, 0.0]);
        assert_eq!(targets, [3, 0]);
    }

    #[test]
    fn check_names_the_bad_setting() {
        assert!(MaskedLm::new(99, 100).check().is_ok());
        let err = |m: MaskedLm| m.check().unwrap_err().to_string();
        assert!(
            err(MaskedLm {
                rate: 0.0,
                ..MaskedLm::new(99, 100)
            })
            .contains("mask_rate")
        );
        assert!(err(MaskedLm::new(100, 100)).contains("mask id 100"));
        assert!(
            err(MaskedLm::new(2, 3)).contains("mask id 2")
                || err(MaskedLm::new(2, 3)).contains("no token")
        );
    }
}
