use std::fmt;
use std::str::FromStr;

use burn::config::Config;
use burn::tensor::{Tensor, activation};

/// The non-linearity a layer applies after its affine map.
///
/// One enum for every model crate, so that `--activation gelu` means the same thing for an MLP,
/// a CNN block or a Transformer feed-forward.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `max(0, x)`.
    Relu,
    /// `x` for `x > 0`, else `0.01 x` (Keras and PyTorch's default slope).
    LeakyRelu,
    /// `x` for `x > 0`, else `exp(x) - 1` (alpha = 1).
    Elu,
    /// `x Φ(x)`, the Gaussian error linear unit (exact form).
    Gelu,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
}

impl Activation {
    /// Every activation, in the order the CLI lists them.
    pub const ALL: [Activation; 6] = [
        Activation::Relu,
        Activation::LeakyRelu,
        Activation::Elu,
        Activation::Gelu,
        Activation::Sigmoid,
        Activation::Tanh,
    ];

    /// The name used on the command line and in saved configs.
    pub fn name(&self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::LeakyRelu => "leaky-relu",
            Activation::Elu => "elu",
            Activation::Gelu => "gelu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
        }
    }

    /// Applies the activation element-wise.
    ///
    /// # Shapes
    /// - input: any shape
    /// - output: the same shape
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Relu => activation::relu(x),
            Activation::LeakyRelu => activation::leaky_relu(x, 0.01),
            Activation::Elu => activation::elu(x, 1.0),
            Activation::Gelu => activation::gelu(x),
            Activation::Sigmoid => activation::sigmoid(x),
            Activation::Tanh => activation::tanh(x),
        }
    }
}

/// An activation name that is not one of [`Activation::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownActivation(pub String);

impl fmt::Display for UnknownActivation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let valid: Vec<&str> = Activation::ALL.iter().map(Activation::name).collect();
        write!(
            f,
            "unknown activation `{}` (valid: {})",
            self.0,
            valid.join(", ")
        )
    }
}

impl std::error::Error for UnknownActivation {}

impl FromStr for Activation {
    type Err = UnknownActivation;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.to_ascii_lowercase().replace('_', "-");
        Activation::ALL
            .into_iter()
            .find(|a| a.name() == wanted || (wanted == "leakyrelu" && *a == Activation::LeakyRelu))
            .ok_or_else(|| UnknownActivation(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn values_match_their_formulas() {
        let device = Device::flex();
        let x = Tensor::<1>::from_floats([-2.0, -0.5, 0.0, 1.5], &device);
        let expect = |a: Activation, f: fn(f32) -> f32| {
            let got = a
                .forward(x.clone())
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            for (g, v) in got.iter().zip([-2.0f32, -0.5, 0.0, 1.5]) {
                assert!((g - f(v)).abs() < 1e-5, "{a} at {v}: {g} vs {}", f(v));
            }
        };
        expect(Activation::Relu, |v| v.max(0.0));
        expect(
            Activation::LeakyRelu,
            |v| if v > 0.0 { v } else { 0.01 * v },
        );
        expect(Activation::Elu, |v| if v > 0.0 { v } else { v.exp() - 1.0 });
        expect(Activation::Sigmoid, |v| 1.0 / (1.0 + (-v).exp()));
        expect(Activation::Tanh, f32::tanh);
        // GELU at 1.5 is 1.5 * Φ(1.5) = 1.5 * 0.9331928.
        let gelu = Activation::Gelu
            .forward(x.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!((gelu[3] - 1.399_789).abs() < 1e-4, "{gelu:?}");
    }

    #[test]
    fn names_round_trip_and_unknown_names_list_the_valid_ones() {
        for a in Activation::ALL {
            assert_eq!(a.name().parse::<Activation>().unwrap(), a);
        }
        let e = "swish".parse::<Activation>().unwrap_err().to_string();
        assert!(
            e.contains("swish") && e.contains("relu, leaky-relu, elu"),
            "{e}"
        );
    }
}
