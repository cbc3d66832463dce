//! BERT's masked-language model: the classifier's encoder with a head that predicts the
//! tokens hidden from it, for pre-training on text without labels.

use burn::module::{Module, Param};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use kiln_common::dense::{affine, dense};
use kiln_common::{Activation, BatchInput, Dropout, Layer, LayerActivations, Model};

use crate::classifier::{embed, encode, encoder_layers};
use crate::{Encoder, PAD_ID, PositionalEncoding, SequenceClassifierConfig, Tokens};

/// A batch for the masked-language objective: token ids (the chosen ones already replaced by
/// `<mask>`, a random token or themselves) and the positions whose original token the model
/// predicts.
#[derive(Debug, Clone)]
pub struct MaskedTokens {
    /// The texts' ids, `[batch, seq]`.
    pub ids: Tensor<2, Int>,
    /// The text of each predicted position, `[n]`.
    pub rows: Tensor<1, Int>,
    /// Its position in the text, `[n]` (sample-major order, as the targets).
    pub positions: Tensor<1, Int>,
}

impl BatchInput for MaskedTokens {
    const IDS: bool = true;

    /// Samples of shape `[2, seq]` hold the ids, then 1 at every position to predict (what
    /// kiln's trainer writes when it masks a batch). Samples of shape `[seq]` are plain texts:
    /// every position that is not padding is predicted (the first one in a batch of padding).
    fn from_samples(
        values: Vec<f32>,
        batch: usize,
        sample_shape: &[usize],
        device: &Device,
    ) -> Self {
        let (seq, marked) = match *sample_shape {
            [2, seq] => (seq, true),
            _ => (sample_shape.iter().product(), false),
        };
        let width = if marked { 2 * seq } else { seq };
        let mut ids = Vec::with_capacity(batch * seq);
        let (mut rows, mut positions) = (Vec::new(), Vec::new());
        for (row, sample) in values.chunks(width).take(batch).enumerate() {
            ids.extend(sample[..seq].iter().map(|&v| v as i64));
            for p in 0..seq {
                let predicted = match marked {
                    true => sample[seq + p] != 0.0,
                    false => sample[p] as usize != PAD_ID,
                };
                if predicted {
                    rows.push(row as i64);
                    positions.push(p as i64);
                }
            }
        }
        if rows.is_empty() {
            rows.push(0);
            positions.push(0);
        }
        let n = rows.len();
        let ints = |v: Vec<i64>| Tensor::from_data(TensorData::new(v, [n]), device);
        MaskedTokens {
            ids: Tensor::from_data(TensorData::new(ids, [batch, seq]), device),
            rows: ints(rows),
            positions: ints(positions),
        }
    }
}

/// The prediction head of BERT's masked-language model: a dense layer with GELU, layer norm,
/// then scores over the vocabulary from the input embedding's own table (tied weights, as BERT's:
/// it starts as N(0, 1/d_model), so the first scores of a normed vector have unit variance),
/// plus a bias per token.
#[derive(Module, Debug)]
pub struct MaskedLmHead {
    /// `d_model -> d_model`, before GELU.
    pub transform: Linear,
    /// Layer norm after GELU.
    pub norm: LayerNorm,
    /// One bias per token of the vocabulary, `[vocab_size]`.
    pub bias: Param<Tensor<1>>,
}

impl MaskedLmHead {
    /// # Shapes
    /// - x: `[n, d_model]`
    /// - embedding: the token table `[vocab_size, d_model]`
    /// - output: `[n, vocab_size]`
    pub fn forward(&self, x: Tensor<2>, embedding: Tensor<2>) -> Tensor<2> {
        let x = self
            .norm
            .forward(dense(&self.transform, x, Some(Activation::Gelu), None));
        affine(x, embedding.transpose(), self.bias.val())
    }
}

/// An encoder pre-trained as BERT was (Devlin et al., 2019): some tokens of each text are
/// hidden and the model predicts them from both sides. Its embedding, positions, `[CLS]`
/// vector and encoder blocks carry the [`SequenceClassifier`](crate::SequenceClassifier)'s
/// module paths, so that a classifier of the same configuration starts from them (kiln's
/// `init_from`) and only its head is new.
///
/// ```text
/// ids [batch, seq] -> the classifier's embedding, positions and encoder -> [batch, seq, d_model]
///   -> the predicted positions [n, d_model] -> Linear, GELU, LayerNorm -> x E^T + b -> [n, vocab]
/// ```
#[derive(Module, Debug)]
pub struct MaskedLanguageModel {
    /// The token embedding (also the output table).
    pub input: Tokens,
    /// The `[CLS]` vector, with CLS pooling.
    pub cls: Option<Param<Tensor<3>>>,
    /// Positional encodings.
    pub positions: PositionalEncoding,
    /// The encoder blocks.
    pub encoder: Encoder,
    /// Layer norm after the last block (pre-norm).
    pub final_norm: Option<LayerNorm>,
    /// Dropout on the encoder's input.
    pub dropout: Dropout,
    /// Predicts the hidden tokens.
    pub mlm_head: MaskedLmHead,
}

impl SequenceClassifierConfig {
    /// A masked-language model over a vocabulary of `vocab_size` ids with this encoder
    /// (`d_output` and `pooling`'s head are not used: the head predicts tokens).
    ///
    /// # Panics
    /// If [`check`](Self::check) fails.
    pub fn init_masked_lm(&self, vocab_size: usize, device: &Device) -> MaskedLanguageModel {
        let body = self.init_tokens(vocab_size, device);
        MaskedLanguageModel {
            input: body.input,
            cls: body.cls,
            positions: body.positions,
            encoder: body.encoder,
            final_norm: body.final_norm,
            dropout: body.dropout,
            mlm_head: MaskedLmHead {
                transform: LinearConfig::new(self.d_model, self.d_model).init(device),
                norm: LayerNormConfig::new(self.d_model).init(device),
                bias: Initializer::Zeros.init([vocab_size], device),
            },
        }
    }
}

impl MaskedLanguageModel {
    /// The encoder's output at every position (BERT's contextual vectors), and the padding.
    ///
    /// # Shapes
    /// - ids: `[batch, seq]`
    /// - output: `[batch, seq (+1 with CLS), d_model]`, and `[batch, seq (+1)]`
    pub fn encode(
        &self,
        ids: Tensor<2, Int>,
    ) -> (Tensor<3>, Option<Tensor<2, burn::tensor::Bool>>) {
        let (x, padding) = self.embed(ids);
        (
            encode(&self.encoder, self.final_norm.as_ref(), x, padding.clone()),
            padding,
        )
    }

    fn embed(&self, ids: Tensor<2, Int>) -> (Tensor<3>, Option<Tensor<2, burn::tensor::Bool>>) {
        let parts = (
            &self.input,
            self.cls.as_ref(),
            &self.positions,
            &self.dropout,
        );
        embed(parts, ids)
    }
}

impl Model for MaskedLanguageModel {
    type Input = MaskedTokens;

    /// # Shapes
    /// - input: `[batch, seq]` ids and `n` predicted positions
    /// - output: `[n, vocab_size]`, the scores of each predicted position's token
    fn forward(&self, input: MaskedTokens) -> Tensor<2> {
        let [_, seq] = input.ids.dims();
        let (x, _) = self.encode(input.ids);
        let [batch, len, d_model] = x.dims();
        // With CLS, the texts' positions start at 1.
        let at = input.rows.mul_scalar(len as i64) + input.positions.add_scalar((len - seq) as i64);
        let chosen = x.reshape([batch * len, d_model]).select(0, at);
        self.mlm_head
            .forward(chosen, self.input.embedding.weight.val())
    }

    /// The embedding (also the head's output table), each encoder block and the head, for one
    /// predicted position.
    fn layers(&self, sample_shape: &[usize]) -> Vec<Layer> {
        let model = self.valid();
        let device = model.mlm_head.transform.weight.device();
        let seq = sample_shape.last().copied().unwrap_or(1);
        let ids = Tensor::<2, Int>::zeros([1, seq], &device);
        let parts = (&model.input, model.cls.as_ref(), &model.positions);
        let (mut rows, x) = encoder_layers(parts, &model.encoder, model.final_norm.as_ref(), ids);
        let [_, len, d_model] = x.dims();
        let one = x
            .slice([0..1, len - 1..len, 0..d_model])
            .reshape([1, d_model]);
        let out = model
            .mlm_head
            .forward(one, model.input.embedding.weight.val());
        rows.push(Layer::new(
            "mlm_head",
            "Masked-token head",
            &model.mlm_head,
            &out,
        ));
        rows
    }

    /// Each encoder block's feed-forward pre-activations (`encoder.blocks.0`, ...).
    fn activations(&self, input: MaskedTokens) -> Vec<LayerActivations> {
        let (x, padding) = self.embed(input.ids);
        let (_, layers) = self.encoder.activations(x, padding);
        layers.into_iter().map(|l| l.within("encoder")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Pooling, SequenceClassifier};
    use burn::module::ModuleVisitor;
    use burn::tensor::Tolerance;

    fn config() -> SequenceClassifierConfig {
        SequenceClassifierConfig::new(16, 2)
            .with_n_heads(2)
            .with_d_ff(32)
            .with_dropout(0.0)
            .with_max_len(8)
    }

    #[test]
    fn marked_samples_choose_their_positions_and_plain_ones_every_token() {
        let device = Device::flex();
        // Two texts of 3: ids then marks.
        let marked = vec![5., 4., 0., 0., 1., 0., 7., 8., 9., 1., 0., 1.];
        let input = MaskedTokens::from_samples(marked, 2, &[2, 3], &device);
        let ints = |t: Tensor<1, Int>| t.into_data().iter::<i64>().collect::<Vec<_>>();
        assert_eq!(input.ids.dims(), [2, 3]);
        assert_eq!(ints(input.rows), [0, 1, 1]);
        assert_eq!(ints(input.positions), [1, 0, 2]);
        let plain = MaskedTokens::from_samples(vec![5., 4., 0., 7., 0., 0.], 2, &[3], &device);
        assert_eq!(ints(plain.rows), [0, 0, 1]);
        assert_eq!(ints(plain.positions), [0, 1, 0]);
    }

    /// The scores at a predicted position are those of the full sequence's output there,
    /// with or without a `[CLS]` vector in front.
    #[test]
    fn scores_are_the_heads_output_at_the_chosen_positions() {
        let device = Device::flex();
        for pooling in [Pooling::Mean, Pooling::Cls] {
            let model = config().with_pooling(pooling).init_masked_lm(12, &device);
            let ids = vec![3., 4., 5., 0., 6., 7., 8., 9.];
            let all = model.forward(MaskedTokens::from_samples(ids.clone(), 2, &[4], &device));
            assert_eq!(all.dims(), [7, 12]);
            let mut marked = vec![0.0; 16];
            marked[..4].copy_from_slice(&ids[..4]);
            marked[8..12].copy_from_slice(&ids[4..]);
            marked[4 + 2] = 1.0; // text 0, position 2: row 2 of `all`
            marked[12 + 3] = 1.0; // text 1, position 3: row 6
            let some = model.forward(MaskedTokens::from_samples(marked, 2, &[2, 4], &device));
            let expected = Tensor::cat(vec![all.clone().slice(2..3), all.slice(6..7)], 0);
            some.into_data()
                .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::default());
        }
    }

    /// The summary's rows add up to the model's parameters, the tied table counted once.
    #[test]
    fn the_summary_counts_every_parameter_once() {
        let device = Device::flex();
        let model = config()
            .with_pooling(Pooling::Cls)
            .init_masked_lm(12, &device);
        let rows = model.layers(&[6]);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "input",
                "cls",
                "positions",
                "encoder.blocks.0",
                "encoder.blocks.1",
                "mlm_head"
            ]
        );
        let total: usize = rows.iter().map(|r| r.params).sum();
        assert_eq!(total, model.num_params());
        assert_eq!(rows.last().unwrap().output, [12]);
    }

    /// The head scores tokens against the input embedding's table: one tensor, trained by both.
    #[test]
    fn the_output_table_is_the_input_embedding() {
        let device = Device::flex();
        let mut model = config().init_masked_lm(10, &device);
        let before = model.forward(MaskedTokens::from_samples(vec![3., 4.], 1, &[2], &device));
        let weight = model.input.embedding.weight.val().mul_scalar(2.0);
        model.input.embedding.weight = Param::from_tensor(weight);
        let after = model.forward(MaskedTokens::from_samples(vec![3., 4.], 1, &[2], &device));
        assert!(
            (after - before).abs().max().into_scalar::<f32>() > 1e-3,
            "scaling the embedding changes the scores"
        );
    }

    /// Every parameter of the classifier but its head has the same path and shape in the
    /// masked-language model: what makes pre-training then fine-tuning one `init_from`.
    #[test]
    fn the_encoder_shares_the_classifiers_module_paths() {
        struct Paths(Vec<(String, Vec<usize>)>, Vec<String>);
        impl ModuleVisitor for Paths {
            fn enter_module(&mut self, name: &str, _: &str) {
                self.1.push(name.to_string());
            }
            fn exit_module(&mut self, _: &str, _: &str) {
                self.1.pop();
            }
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0.push((self.1.join("."), param.val().dims().to_vec()));
            }
        }
        let device = Device::flex();
        let config = config().with_pooling(Pooling::Cls).with_norm_first(true);
        let paths = |visit: &dyn Fn(&mut Paths)| {
            let mut p = Paths(Vec::new(), Vec::new());
            visit(&mut p);
            p.0
        };
        let classifier: SequenceClassifier<Tokens> = config.init_tokens(10, &device);
        let mlm = config.init_masked_lm(10, &device);
        let ours = paths(&|p| mlm.visit(p));
        let theirs = paths(&|p| classifier.visit(p));
        let shared: Vec<_> = theirs
            .iter()
            .filter(|(p, _)| !p.starts_with("head"))
            .collect();
        assert!(shared.len() > 10);
        for tensor in shared {
            assert!(ours.contains(tensor), "{tensor:?} missing");
        }
    }
}
