use burn::tensor::Tensor;
use burn::tensor::activation::{sigmoid, tanh};

use crate::recurrence::{
    Direction, gate, keep_where, one_direction, pytorch_layer, stack_steps, step_masks,
};

pytorch_layer!(
    /// Configuration of a [`Gru`] layer.
    ///
    /// # Example
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use kiln_lstm::GruConfig;
    ///
    /// let device = Device::flex();
    /// let gru = GruConfig::new(8, 16).init(&device);
    /// let (out, h) = gru.forward(Tensor::zeros([4, 5, 8], &device), None);
    /// assert_eq!(out.dims(), [4, 5, 16]);
    /// assert_eq!(h.dims(), [1, 4, 16]);
    /// ```
    GruConfig,
    /// A gated recurrent unit layer, PyTorch's `nn.GRU(batch_first=True)` for one layer:
    ///
    /// ```text
    /// r = σ(W_ir x + b_ir + W_hr h + b_hr)      z = σ(W_iz x + b_iz + W_hz h + b_hz)
    /// n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
    /// h' = (1 - z) ⊙ n + z ⊙ h
    /// ```
    ///
    /// Gates are stacked r, z, n in `weight_ih_l0` `[3H, I]` and `weight_hh_l0` `[3H, H]`.
    Gru,
    gates = 3
);

impl Gru {
    /// Runs the sequence from a zero state; `lengths` as in [`Lstm::forward`](crate::Lstm::forward).
    ///
    /// # Shapes
    /// - x: `[batch, seq, d_input]`
    /// - output: `[batch, seq, d_output]`
    /// - state: `h_n`, `[directions, batch, d_hidden]`
    pub fn forward(&self, x: Tensor<3>, lengths: Option<&[usize]>) -> (Tensor<3>, Tensor<3>) {
        let (forward, backward) = self.directions();
        forward.check_input("GRU", x.dims());
        let (out, h) = self.run(&forward, x.clone(), lengths, false);
        match backward {
            Some(backward) => {
                let (out_r, h_r) = self.run(&backward, x, lengths, true);
                (
                    Tensor::cat(vec![out, out_r], 2),
                    Tensor::stack(vec![h, h_r], 0),
                )
            }
            None => (out, one_direction(h)),
        }
    }

    fn run(
        &self,
        dir: &Direction,
        x: Tensor<3>,
        lengths: Option<&[usize]>,
        reverse: bool,
    ) -> (Tensor<3>, Tensor<2>) {
        let [batch, seq, _] = x.dims();
        let device = x.device();
        let hd = self.d_hidden;
        let masks = step_masks(lengths, seq, &device);
        let mut h = Tensor::<2>::zeros([batch, hd], &device);
        let mut outputs = vec![None; seq];
        let steps: Vec<usize> = if reverse {
            (0..seq).rev().collect()
        } else {
            (0..seq).collect()
        };
        for t in steps {
            let xi = dir.project_input_step(x.clone().narrow(1, t, 1).squeeze_dim::<2>(1));
            let hh = dir.project_hidden(h.clone());
            let r = sigmoid(gate(&xi, 0, hd) + gate(&hh, 0, hd));
            let z = sigmoid(gate(&xi, 1, hd) + gate(&hh, 1, hd));
            let n = tanh(gate(&xi, 2, hd) + r * gate(&hh, 2, hd));
            let h_new = (z.ones_like() - z.clone()) * n + z * h.clone();
            h = keep_where(masks.as_ref().map(|m| &m[t]), h_new, h);
            outputs[t] = Some(h.clone());
        }
        let outputs = outputs
            .into_iter()
            .map(|o| o.expect("every step ran"))
            .collect();
        (stack_steps(outputs), h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn shapes_and_padding() {
        let device = Device::flex();
        let gru = GruConfig::new(2, 3).with_bidirectional(true).init(&device);
        let real = Tensor::<3>::random([1, 4, 2], Distribution::Default, &device);
        let (out, h) = gru.forward(real.clone(), None);
        assert_eq!((out.dims(), h.dims()), ([1, 4, 6], [2, 1, 3]));
        let padded = Tensor::cat(vec![real, Tensor::ones([1, 3, 2], &device) * 7.0], 1);
        let (_, h_padded) = gru.forward(padded, Some(&[4]));
        let v = |t: Tensor<3>| t.into_data().iter::<f32>().collect::<Vec<_>>();
        for (a, b) in v(h).iter().zip(v(h_padded)) {
            assert!((a - b).abs() < 1e-5);
        }
    }
}
