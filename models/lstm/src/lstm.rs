use burn::tensor::Tensor;
use burn::tensor::activation::{sigmoid, tanh};

use crate::fused;
use crate::recurrence::{
    Direction, gate, keep_where, one_direction, pytorch_layer, stack_steps, step_masks,
};

pytorch_layer!(
    /// Configuration of an [`Lstm`] layer.
    ///
    /// # Example
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use kiln_lstm::LstmConfig;
    ///
    /// let device = Device::flex();
    /// let lstm = LstmConfig::new(8, 16).with_bidirectional(true).init(&device);
    /// let (out, (h, c)) = lstm.forward(Tensor::zeros([4, 5, 8], &device), None);
    /// assert_eq!(out.dims(), [4, 5, 32]); // both directions' outputs, side by side
    /// assert_eq!(h.dims(), [2, 4, 16]);
    /// assert_eq!(c.dims(), [2, 4, 16]);
    /// ```
    LstmConfig,
    /// A long short-term memory layer, PyTorch's `nn.LSTM(batch_first=True)` for one layer:
    ///
    /// ```text
    /// i = σ(W_ii x + b_ii + W_hi h + b_hi)      f = σ(W_if x + b_if + W_hf h + b_hf)
    /// g = tanh(W_ig x + b_ig + W_hg h + b_hg)   o = σ(W_io x + b_io + W_ho h + b_ho)
    /// c' = f ⊙ c + i ⊙ g                         h' = o ⊙ tanh(c')
    /// ```
    ///
    /// The four gates' weights are stacked in that order (i, f, g, o) in `weight_ih_l0`
    /// `[4H, I]` and `weight_hh_l0` `[4H, H]`, as PyTorch stores them.
    Lstm,
    gates = 4
);

/// An LSTM's final state per direction: `h_n` and `c_n`, `[directions, batch, d_hidden]`.
pub type LstmState = (Tensor<3>, Tensor<3>);

impl Lstm {
    /// Runs the sequence from a zero state. With `lengths`, sequence `b` is taken to end after
    /// `lengths[b]` steps (padding after that changes neither its outputs up to there nor its
    /// final state; outputs at padded steps repeat the last real state).
    ///
    /// # Shapes
    /// - x: `[batch, seq, d_input]`
    /// - output: `[batch, seq, d_output]` (forward then backward halves when bidirectional)
    /// - state: `h_n`, `c_n` of `[directions, batch, d_hidden]`
    pub fn forward(&self, x: Tensor<3>, lengths: Option<&[usize]>) -> (Tensor<3>, LstmState) {
        let (forward, backward) = self.directions();
        forward.check_input("LSTM", x.dims());
        let (out, h, c) = self.run(&forward, x.clone(), lengths, false);
        match backward {
            Some(backward) => {
                let (out_r, h_r, c_r) = self.run(&backward, x, lengths, true);
                let state = (
                    Tensor::stack(vec![h, h_r], 0),
                    Tensor::stack(vec![c, c_r], 0),
                );
                (Tensor::cat(vec![out, out_r], 2), state)
            }
            None => (out, (one_direction(h), one_direction(c))),
        }
    }

    /// One direction: the fused sequence kernel where the backend has it and every sequence
    /// fills the whole length, else the step function.
    fn run(
        &self,
        dir: &Direction,
        x: Tensor<3>,
        lengths: Option<&[usize]>,
        reverse: bool,
    ) -> (Tensor<3>, Tensor<2>, Tensor<2>) {
        if lengths.is_none() && fused::applies_to(&x) {
            self.run_fused(dir, x, reverse)
        } else {
            self.run_steps(dir, x, lengths, reverse)
        }
    }

    fn run_fused(
        &self,
        dir: &Direction,
        x: Tensor<3>,
        reverse: bool,
    ) -> (Tensor<3>, Tensor<2>, Tensor<2>) {
        let [_, seq, _] = x.dims();
        let hd = self.d_hidden;
        let x = if reverse { x.flip([1]) } else { x };
        let packed = fused::lstm_sequence(
            x,
            dir.weight_ih.clone(),
            dir.weight_hh.clone(),
            dir.bias_ih.clone(),
            dir.bias_hh.clone(),
        );
        let last = packed.clone().narrow(1, seq - 1, 1).squeeze_dim::<2>(1);
        let (h, c) = (last.clone().narrow(1, 0, hd), last.narrow(1, hd, hd));
        let out = packed.narrow(2, 0, hd);
        let out = if reverse { out.flip([1]) } else { out };
        (out, h, c)
    }

    fn run_steps(
        &self,
        dir: &Direction,
        x: Tensor<3>,
        lengths: Option<&[usize]>,
        reverse: bool,
    ) -> (Tensor<3>, Tensor<2>, Tensor<2>) {
        let [batch, seq, _] = x.dims();
        let device = x.device();
        let hd = self.d_hidden;
        let (stacked, bias) = dir.stacked_weights();
        let masks = step_masks(lengths, seq, &device);
        let mut h = Tensor::<2>::zeros([batch, hd], &device);
        let mut c = Tensor::<2>::zeros([batch, hd], &device);
        let mut outputs = vec![None; seq];
        let steps: Vec<usize> = if reverse {
            (0..seq).rev().collect()
        } else {
            (0..seq).collect()
        };
        for t in steps {
            let x_t = x.clone().narrow(1, t, 1).squeeze_dim::<2>(1);
            let gates = dir.project_step(&stacked, &bias, x_t, h.clone());
            let i = sigmoid(gate(&gates, 0, hd));
            let f = sigmoid(gate(&gates, 1, hd));
            let g = tanh(gate(&gates, 2, hd));
            let o = sigmoid(gate(&gates, 3, hd));
            let c_new = f * c.clone() + i * g;
            let h_new = o * tanh(c_new.clone());
            let mask = masks.as_ref().map(|m| &m[t]);
            c = keep_where(mask, c_new, c);
            h = keep_where(mask, h_new, h);
            outputs[t] = Some(h.clone());
        }
        let outputs = outputs
            .into_iter()
            .map(|o| o.expect("every step ran"))
            .collect();
        (stack_steps(outputs), h, c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().iter::<f32>().collect()
    }

    #[test]
    fn shapes_and_bidirectional_width() {
        let device = Device::flex();
        let x = Tensor::<3>::random([3, 7, 5], Distribution::Default, &device);
        for (bidirectional, dirs) in [(false, 1), (true, 2)] {
            let lstm = LstmConfig::new(5, 8)
                .with_bidirectional(bidirectional)
                .init(&device);
            let (out, (h, c)) = lstm.forward(x.clone(), None);
            assert_eq!(out.dims(), [3, 7, 8 * dirs]);
            assert_eq!(h.dims(), [dirs, 3, 8]);
            assert_eq!(c.dims(), [dirs, 3, 8]);
            assert_eq!(lstm.d_output(), 8 * dirs);
        }
    }

    #[test]
    fn a_batch_equals_its_sequences_run_one_at_a_time() {
        let device = Device::flex();
        let lstm = LstmConfig::new(4, 6).init(&device);
        let x = Tensor::<3>::random([3, 5, 4], Distribution::Default, &device);
        let (batched, _) = lstm.forward(x.clone(), None);
        for b in 0..3 {
            let (alone, _) = lstm.forward(x.clone().narrow(0, b, 1), None);
            let last = |t: Tensor<3>| values(t.narrow(1, 4, 1));
            for (a, b) in last(alone)
                .iter()
                .zip(last(batched.clone().narrow(0, b, 1)))
            {
                assert!((a - b).abs() < 1e-5);
            }
        }
    }

    /// The fused kernel (taken on flex without lengths) against the step function: outputs,
    /// final states, and the gradients of the input and of every parameter.
    #[test]
    #[cfg(feature = "flex")]
    fn the_fused_kernel_matches_the_step_function() {
        let device = Device::flex().autodiff();
        let lstm = LstmConfig::new(3, 5).with_bidirectional(true).init(&device);
        let x = Tensor::<3>::random([2, 4, 3], Distribution::Default, &device).require_grad();
        let (forward, backward) = lstm.directions();
        let backward = backward.expect("bidirectional");
        let close = |a: Tensor<3>, b: Tensor<3>| {
            let (a, b) = (values(a), values(b));
            assert_eq!(a.len(), b.len());
            assert!(
                a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5),
                "{a:?} vs {b:?}"
            );
        };
        for (dir, reverse) in [(&forward, false), (&backward, true)] {
            let (out_f, h_f, c_f) = lstm.run_fused(dir, x.clone(), reverse);
            let (out_s, h_s, c_s) = lstm.run_steps(dir, x.clone(), None, reverse);
            close(out_f.clone(), out_s.clone());
            close(h_f.clone().unsqueeze(), h_s.clone().unsqueeze());
            close(c_f.clone().unsqueeze(), c_s.clone().unsqueeze());
            // A loss that weighs every output and both final states differently.
            let w = Tensor::<3>::random([2, 4, 5], Distribution::Default, &device);
            let loss = |out: Tensor<3>, h: Tensor<2>, c: Tensor<2>| {
                (out * w.clone()).sum() + (h * 2.0).sum() + (c * 3.0).powi_scalar(2).sum()
            };
            let g_f = loss(out_f, h_f, c_f).backward();
            let g_s = loss(out_s, h_s, c_s).backward();
            let grad = |g: &burn::tensor::Gradients| x.grad(g).expect("x grad");
            close(grad(&g_f), grad(&g_s));
            let w = |t: &Tensor<2>, g| t.grad(g).expect("grad").unsqueeze::<3>();
            close(w(&dir.weight_ih, &g_f), w(&dir.weight_ih, &g_s));
            close(w(&dir.weight_hh, &g_f), w(&dir.weight_hh, &g_s));
            let b = |t: &Tensor<1>, g| t.grad(g).expect("grad").unsqueeze::<3>();
            close(b(&dir.bias_ih, &g_f), b(&dir.bias_ih, &g_s));
            close(b(&dir.bias_hh, &g_f), b(&dir.bias_hh, &g_s));
        }
    }

    #[test]
    fn padding_after_a_sequence_does_not_change_its_last_real_step() {
        let device = Device::flex();
        let lstm = LstmConfig::new(2, 3).with_bidirectional(true).init(&device);
        let real = Tensor::<3>::random([1, 3, 2], Distribution::Default, &device);
        let (alone, (h_alone, _)) = lstm.forward(real.clone(), None);
        // The same 3 steps followed by 2 steps of large junk, with its length given.
        let junk = Tensor::<3>::random([1, 2, 2], Distribution::Uniform(5.0, 9.0), &device);
        let padded = Tensor::cat(vec![real, junk], 1);
        let (out, (h, _)) = lstm.forward(padded, Some(&[3]));
        let close = |a: Vec<f32>, b: Vec<f32>| a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5);
        assert!(close(
            values(alone.narrow(1, 2, 1)),
            values(out.clone().narrow(1, 2, 1))
        ));
        assert!(
            close(values(h_alone), values(h)),
            "final states of both directions"
        );
    }

    /// A sequence of no steps is refused with its shape, on the fused path and the step path
    /// (with lengths), as PyTorch's RNNs refuse it.
    #[test]
    fn a_sequence_of_no_steps_is_refused() {
        let device = Device::flex();
        let lstm = LstmConfig::new(3, 4).init(&device);
        for lengths in [None, Some(&[0usize, 0][..])] {
            let x = Tensor::<3>::zeros([2, 0, 3], &device);
            let run = std::panic::AssertUnwindSafe(|| lstm.forward(x, lengths));
            let panic = std::panic::catch_unwind(run).unwrap_err();
            let text = panic.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(
                text.contains("LSTM: the input [2, 0, 3]") && text.contains("no steps"),
                "{text}"
            );
        }
    }

    /// An input with another feature count than weight_ih takes is refused with both shapes
    /// (the fused kernel took the count from the input and read the weights with its stride).
    #[test]
    #[should_panic(
        expected = "LSTM: the input [2, 5, 4] ([batch, seq, d_input]) has 4 features, \
                               the weight_ih [16, 3] takes 3"
    )]
    fn another_feature_count_is_refused() {
        let device = Device::flex();
        let lstm = LstmConfig::new(3, 4).init(&device);
        lstm.forward(Tensor::<3>::zeros([2, 5, 4], &device), None);
    }

    /// An empty batch gives empty outputs and states.
    #[test]
    fn an_empty_batch_gives_empty_outputs() {
        let device = Device::flex();
        let lstm = LstmConfig::new(3, 4).init(&device);
        let x = Tensor::<3>::zeros([0, 5, 3], &device);
        let (out, (h, _)) = lstm.forward(x, None);
        assert_eq!((out.dims(), h.dims()), ([0, 5, 4], [1, 0, 4]));
    }
}
