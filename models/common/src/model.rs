use std::fmt;

use burn::module::{Module, ModuleDisplay};
use burn::tensor::{Device, Int, Tensor, TensorData};

/// A model kiln's trainer can fit: a Burn module that maps a batch of inputs to one row of
/// outputs per sample (logits for classification, values for regression).
///
/// Every kiln model implements it; implement it for your own module to train that with
/// `kiln-train` too.
pub trait Model: Module + ModuleDisplay + fmt::Display + 'static {
    /// What one batch of inputs is, such as `Tensor<2>` (`[batch, features]`) for an MLP.
    type Input: BatchInput;

    /// # Shapes
    /// - input: a batch of `batch` samples
    /// - output: `[batch, d_output]`
    fn forward(&self, input: Self::Input) -> Tensor<2>;

    /// The model's layers for samples of `sample_shape` (no batch dimension), with each
    /// one's output shape and parameter count: the rows of its [`summary`](crate::summary).
    /// The default lists none, and the summary shows the model as one row.
    fn layers(&self, sample_shape: &[usize]) -> Vec<crate::Layer> {
        let _ = sample_shape;
        Vec::new()
    }

    /// The inputs of the model's activation layers for `input`, in inference mode: what the
    /// trainer's diagnosis reads, on a fixed batch of training samples after each epoch, to
    /// find dead and saturated units. The default lists none (no unit is judged).
    fn activations(&self, input: Self::Input) -> Vec<crate::LayerActivations> {
        let _ = input;
        Vec::new()
    }
}

/// A batch of model inputs built from samples stored flat, one after the other.
pub trait BatchInput: Clone + Send + Sync + fmt::Debug + 'static {
    /// Whether the values are ids (token ids), not magnitudes: their scale means nothing.
    const IDS: bool = false;

    /// Builds the batch from `batch` samples of shape `sample_shape`, row-major in `values`.
    fn from_samples(
        values: Vec<f32>,
        batch: usize,
        sample_shape: &[usize],
        device: &Device,
    ) -> Self;
}

impl<const D: usize> BatchInput for Tensor<D> {
    /// Keeps the sample's own dimensions when the tensor has room for them
    /// (`[batch, c, h, w]` for images); a `Tensor<2>` flattens each sample to one row.
    fn from_samples(
        values: Vec<f32>,
        batch: usize,
        sample_shape: &[usize],
        device: &Device,
    ) -> Self {
        let mut shape = [1usize; D];
        shape[0] = batch;
        if sample_shape.len() + 1 == D {
            shape[1..].copy_from_slice(sample_shape);
        } else {
            // Fold the sample into the last D-1 dimensions, leading ones first.
            let len: usize = sample_shape.iter().product();
            shape[D - 1] = len;
        }
        Tensor::from_data(TensorData::new(values, shape), device)
    }
}

impl<const D: usize> BatchInput for Tensor<D, Int> {
    const IDS: bool = true;

    /// Ids (token ids) stored as exact whole numbers in the f32 values, shaped like
    /// [`Tensor<D>`]'s batches: `[batch, seq]` for a `Tensor<2, Int>` of token sequences.
    fn from_samples(
        values: Vec<f32>,
        batch: usize,
        sample_shape: &[usize],
        device: &Device,
    ) -> Self {
        let ids: Vec<i64> = values.into_iter().map(|v| v as i64).collect();
        let mut shape = [1usize; D];
        shape[0] = batch;
        if sample_shape.len() + 1 == D {
            shape[1..].copy_from_slice(sample_shape);
        } else {
            shape[D - 1] = sample_shape.iter().product();
        }
        Tensor::from_data(TensorData::new(ids, shape), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_keep_their_shape_or_flatten_to_rows() {
        let device = Device::flex();
        let values: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let images = Tensor::<4>::from_samples(values.clone(), 3, &[1, 2, 2], &device);
        assert_eq!(images.dims(), [3, 1, 2, 2]);
        let rows = Tensor::<2>::from_samples(values, 3, &[1, 2, 2], &device);
        assert_eq!(rows.dims(), [3, 4]);
        assert_eq!(
            rows.into_data().try_to_vec::<f32>().unwrap()[4..8],
            [4., 5., 6., 7.]
        );
    }

    #[test]
    fn token_ids_become_an_int_batch() {
        let ids = Tensor::<2, Int>::from_samples(vec![3., 0., 7., 1.], 2, &[2], &Device::flex());
        assert_eq!(ids.dims(), [2, 2]);
        assert_eq!(
            ids.into_data().iter::<i64>().collect::<Vec<_>>(),
            [3, 0, 7, 1]
        );
    }
}
