use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Initializer, generate_sinusoids};
use burn::tensor::{Device, Tensor};

/// How a position is told to the encoder, whose attention alone ignores order.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Positions {
    /// The fixed table of "Attention is all you need": `PE[p, 2i] = sin(p / 10000^(2i/d))`,
    /// `PE[p, 2i+1] = cos(p / 10000^(2i/d))`.
    Sinusoidal,
    /// One trained vector per position (BERT, ViT).
    Learned,
}

/// Configuration of a [`PositionalEncoding`].
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use kiln_transformer::PositionalEncodingConfig;
///
/// let device = Device::flex();
/// let positions = PositionalEncodingConfig::new(512, 16).init(&device);
/// // Added to the embeddings: position 0's sinusoids are sin(0) = 0 and cos(0) = 1.
/// let x = positions.forward(Tensor::zeros([1, 3, 16], &device));
/// let first: Vec<f32> = x.slice([0..1, 0..1, 0..2]).into_data().try_to_vec().unwrap();
/// assert_eq!(first, [0.0, 1.0]);
/// ```
#[derive(Config, Debug)]
pub struct PositionalEncodingConfig {
    /// Longest sequence the table covers (at most 10,000).
    pub max_len: usize,
    /// Must be even for the sinusoidal table.
    pub d_model: usize,
    /// Default: sinusoidal.
    #[config(default = "Positions::Sinusoidal")]
    pub kind: Positions,
}

impl PositionalEncodingConfig {
    /// # Panics
    /// If `max_len` exceeds 10,000 (the sinusoids' timescale) or `d_model` is odd (sinusoidal).
    pub fn init(&self, device: &Device) -> PositionalEncoding {
        assert!(
            self.max_len <= 10_000,
            "max_len must be at most 10000, got {}",
            self.max_len
        );
        match self.kind {
            Positions::Sinusoidal => PositionalEncoding {
                table: None,
                sinusoids: Some(generate_sinusoids(
                    self.max_len,
                    self.d_model,
                    10_000,
                    device,
                )),
            },
            Positions::Learned => PositionalEncoding {
                table: Some(
                    Initializer::Normal {
                        mean: 0.0,
                        std: 0.02,
                    }
                    .init([self.max_len, self.d_model], device),
                ),
                sinusoids: None,
            },
        }
    }
}

/// Adds a position vector to every step; see [`PositionalEncodingConfig`].
#[derive(Module, Debug)]
pub struct PositionalEncoding {
    /// The learned table `[max_len, d_model]`, when learned.
    pub table: Option<Param<Tensor<2>>>,
    /// The fixed table `[max_len, d_model]`, when sinusoidal (a constant, not trained).
    pub sinusoids: Option<Tensor<2>>,
}

impl PositionalEncoding {
    /// The table `[max_len, d_model]`.
    pub fn table(&self) -> Tensor<2> {
        match (&self.table, &self.sinusoids) {
            (Some(table), _) => table.val(),
            (None, Some(sinusoids)) => sinusoids.clone(),
            (None, None) => unreachable!("a positional encoding has one table"),
        }
    }

    /// Longest sequence it covers.
    pub fn max_len(&self) -> usize {
        self.table().dims()[0]
    }

    /// # Shapes
    /// - x: `[batch, seq, d_model]` with `seq <= max_len`
    /// - output: `[batch, seq, d_model]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [_, seq, d_model] = x.dims();
        let table = self.table();
        assert!(
            seq <= table.dims()[0],
            "sequence of {seq} steps is longer than the positional table ({})",
            table.dims()[0]
        );
        x + table.slice([0..seq, 0..d_model]).unsqueeze_dim(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sinusoidal_table_matches_the_formula() {
        let device = Device::flex();
        let (max_len, d) = (50, 16);
        let table: Vec<f32> = PositionalEncodingConfig::new(max_len, d)
            .init(&device)
            .table()
            .into_data()
            .try_to_vec()
            .unwrap();
        for p in 0..max_len {
            for i in 0..d / 2 {
                let angle = p as f64 / 10_000f64.powf(2.0 * i as f64 / d as f64);
                let (sin, cos) = (table[p * d + 2 * i], table[p * d + 2 * i + 1]);
                assert!(
                    (sin as f64 - angle.sin()).abs() < 1e-4,
                    "PE[{p}, {}]",
                    2 * i
                );
                assert!(
                    (cos as f64 - angle.cos()).abs() < 1e-4,
                    "PE[{p}, {}]",
                    2 * i + 1
                );
            }
        }
    }

    #[test]
    fn a_learned_table_is_a_parameter() {
        let device = Device::flex();
        let learned = PositionalEncodingConfig::new(10, 4)
            .with_kind(Positions::Learned)
            .init(&device);
        assert_eq!(learned.num_params(), 40);
        assert_eq!(
            PositionalEncodingConfig::new(10, 4)
                .init(&device)
                .num_params(),
            0
        );
        let x = Tensor::<3>::zeros([2, 3, 4], &device);
        assert_eq!(learned.forward(x).dims(), [2, 3, 4]);
    }
}
