use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::activation::{sigmoid, tanh};
use burn::tensor::{Device, Tensor};

use crate::recurrence::{Direction, gate, init_params, keep_where, stack_steps, step_masks};

/// Configuration of a [`Gru`] layer.
#[derive(Config, Debug)]
pub struct GruConfig {
    /// Features per time step.
    pub d_input: usize,
    /// Size of the hidden state.
    pub d_hidden: usize,
    /// Also run the sequence backwards and concatenate both directions' outputs. Default: off.
    #[config(default = false)]
    pub bidirectional: bool,
}

impl GruConfig {
    pub fn init(&self, device: &Device) -> Gru {
        let (weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0) =
            init_params(3, self.d_input, self.d_hidden, device);
        let reverse = self
            .bidirectional
            .then(|| init_params(3, self.d_input, self.d_hidden, device));
        let (weight_ih_l0_reverse, weight_hh_l0_reverse, bias_ih_l0_reverse, bias_hh_l0_reverse) =
            match reverse {
                Some((a, b, c, d)) => (Some(a), Some(b), Some(c), Some(d)),
                None => (None, None, None, None),
            };
        Gru {
            weight_ih_l0,
            weight_hh_l0,
            bias_ih_l0,
            bias_hh_l0,
            weight_ih_l0_reverse,
            weight_hh_l0_reverse,
            bias_ih_l0_reverse,
            bias_hh_l0_reverse,
            d_hidden: self.d_hidden,
        }
    }
}

/// A gated recurrent unit layer, PyTorch's `nn.GRU(batch_first=True)` for one layer:
///
/// ```text
/// r = σ(W_ir x + b_ir + W_hr h + b_hr)      z = σ(W_iz x + b_iz + W_hz h + b_hz)
/// n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
/// h' = (1 - z) ⊙ n + z ⊙ h
/// ```
///
/// Gates are stacked r, z, n in `weight_ih_l0` `[3H, I]` and `weight_hh_l0` `[3H, H]`.
#[derive(Module, Debug)]
pub struct Gru {
    pub weight_ih_l0: Param<Tensor<2>>,
    pub weight_hh_l0: Param<Tensor<2>>,
    pub bias_ih_l0: Param<Tensor<1>>,
    pub bias_hh_l0: Param<Tensor<1>>,
    pub weight_ih_l0_reverse: Option<Param<Tensor<2>>>,
    pub weight_hh_l0_reverse: Option<Param<Tensor<2>>>,
    pub bias_ih_l0_reverse: Option<Param<Tensor<1>>>,
    pub bias_hh_l0_reverse: Option<Param<Tensor<1>>>,
    #[module(skip)]
    pub d_hidden: usize,
}

impl Gru {
    /// Whether the layer runs both directions.
    pub fn is_bidirectional(&self) -> bool {
        self.weight_ih_l0_reverse.is_some()
    }

    /// Width of each output step: `d_hidden`, doubled when bidirectional.
    pub fn d_output(&self) -> usize {
        self.d_hidden * if self.is_bidirectional() { 2 } else { 1 }
    }

    /// Runs the sequence from a zero state; `lengths` as in [`Lstm::forward`](crate::Lstm::forward).
    ///
    /// # Shapes
    /// - x: `[batch, seq, d_input]`
    /// - output: `[batch, seq, d_output]`
    /// - state: `h_n`, `[directions, batch, d_hidden]`
    pub fn forward(&self, x: Tensor<3>, lengths: Option<&[usize]>) -> (Tensor<3>, Tensor<3>) {
        let forward = Direction::new((
            &self.weight_ih_l0,
            &self.weight_hh_l0,
            &self.bias_ih_l0,
            &self.bias_hh_l0,
        ));
        let (out, h) = self.run(&forward, x.clone(), lengths, false);
        match (
            &self.weight_ih_l0_reverse,
            &self.weight_hh_l0_reverse,
            &self.bias_ih_l0_reverse,
            &self.bias_hh_l0_reverse,
        ) {
            (Some(a), Some(b), Some(c), Some(d)) => {
                let (out_r, h_r) = self.run(&Direction::new((a, b, c, d)), x, lengths, true);
                (
                    Tensor::cat(vec![out, out_r], 2),
                    Tensor::stack(vec![h, h_r], 0),
                )
            }
            _ => (out, h.unsqueeze_dim(0)),
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
    use burn::tensor::Distribution;

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
