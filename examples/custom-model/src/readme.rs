use kiln::burn; // Burn's derives write `burn::...` paths: this makes them kiln's Burn

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use kiln::common::Model;
use kiln::fnn::{Mlp, MlpConfig};
use kiln::lstm::{Lstm, LstmConfig};

#[derive(Module, Debug)]
pub struct Reader {
    rows: Lstm,
    head: Mlp,
}

impl Reader {
    pub fn new(d_input: usize, classes: usize, device: &Device) -> Self {
        Self {
            rows: LstmConfig::new(d_input, 64).init(device),
            head: MlpConfig::new(64, vec![], classes).init(device),
        }
    }
}

impl Model for Reader {
    type Input = Tensor<3>; // [batch, steps, features]

    fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let (steps, _state) = self.rows.forward(x, None);
        self.head.forward(steps.mean_dim(1).squeeze_dim(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's "Use kiln in your crate" example is this file, word for word.
    #[test]
    fn the_readme_shows_this_file() {
        let this = include_str!("readme.rs");
        let code = &this[..this.find("#[cfg(test)]").unwrap()];
        let readme = include_str!("../../../README.md");
        assert!(
            readme.contains(code.trim_end()),
            "README.md and src/readme.rs differ"
        );
    }

    #[test]
    fn the_readme_model_runs() {
        let device = Device::flex();
        let reader = Reader::new(8, 10, &device);
        assert_eq!(
            reader.forward(Tensor::zeros([2, 8, 8], &device)).dims(),
            [2, 10]
        );
    }
}
