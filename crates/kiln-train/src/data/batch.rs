use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::tensor::{Device, Int, Tensor, TensorData};
use kiln_datasets::{Data, Targets};

use crate::Augmentation;
use crate::data::masking::MaskedLm;
use crate::fit::failures::{Failure, Failures};
use crate::fit::replicas::StepShares;
use crate::transfer::distill::TeacherOutputs;

pub use kiln_common::BatchInput;

/// One batch: the model's inputs and what it should predict.
#[derive(Debug, Clone)]
pub struct Batch<I> {
    /// The model's inputs.
    pub inputs: I,
    /// What the model should predict.
    pub targets: BatchTargets,
    /// A teacher's logits for these inputs, `[batch, classes]`, when a student is distilled
    /// from it ([`Trainer::with_teacher`](crate::Trainer::with_teacher)); `None` otherwise.
    pub teacher: Option<Tensor<2>>,
    /// The fraction of its optimiser step's samples this batch holds: 1 on one device; with
    /// several, the training step scales the batch's loss by it, so that the gradients summed
    /// over the devices are the mean over the step's samples.
    pub share: f32,
}

/// The targets of a [`Batch`].
#[derive(Debug, Clone)]
pub enum BatchTargets {
    /// Class indices, `[batch]`.
    Classes(Tensor<1, Int>),
    /// Regression values, `[batch, d_target]`.
    Values(Tensor<2>),
    /// Unlabelled inputs, for prediction only.
    None,
}

/// Builds batches from a [`Data`] held in memory: the data loader hands it sample indices
/// (shuffled when training), and it copies those samples into tensors on the loader's device.
pub struct DataBatcher<I> {
    data: Arc<Data>,
    augmentation: Option<Arc<Augmentation>>,
    shares: Option<Arc<StepShares>>,
    teacher: Option<TeacherOutputs>,
    masking: Option<MaskedLm>,
    /// Where a sample that cannot be read (a corrupt image file) is reported, ending the run.
    failures: Option<Failures>,
    _input: PhantomData<fn() -> I>,
}

impl<I> DataBatcher<I> {
    /// A batcher over `data`.
    pub fn new(data: Arc<Data>) -> Self {
        Self {
            data,
            augmentation: None,
            shares: None,
            teacher: None,
            masking: None,
            failures: None,
            _input: PhantomData,
        }
    }

    /// Augments every batch it builds (training batches only: the trainer never gives the
    /// validation batcher an augmentation). The data's samples must be `[c, h, w]` images.
    pub fn with_augmentation(mut self, augmentation: Augmentation) -> Self {
        self.augmentation = Some(Arc::new(augmentation));
        self
    }

    /// Reports a sample that cannot be read to `failures` (which stops the run with it as its
    /// error) rather than panicking on the loader thread.
    pub(crate) fn with_failures(mut self, failures: Failures) -> Self {
        self.failures = Some(failures);
        self
    }

    /// Masks every batch's texts (masked-language pre-training): the inputs become samples of
    /// shape `[2, seq]` (ids, then the chosen positions) and the targets the hidden tokens.
    pub fn with_masking(mut self, masking: MaskedLm) -> Self {
        self.masking = Some(masking);
        self
    }

    /// Gives every batch the teacher's logits for its inputs (distillation).
    pub(crate) fn with_teacher(mut self, teacher: TeacherOutputs) -> Self {
        self.teacher = Some(teacher);
        self
    }

    /// Marks each batch with its share of the step (data-parallel training).
    pub(crate) fn with_shares(mut self, shares: Arc<StepShares>) -> Self {
        self.shares = Some(shares);
        self
    }
}

impl<I: BatchInput> Batcher<usize, Batch<I>> for DataBatcher<I> {
    fn batch(&self, indices: Vec<usize>, device: &Device) -> Batch<I> {
        let share = self.shares.as_ref().map_or(1.0, |s| s.share(&indices));
        let mut values = Vec::new();
        if let Err(e) = self.data.read_samples(&indices, &mut values) {
            let Some(failures) = &self.failures else {
                panic!("reading the data: {e}");
            };
            // The run stops at the next step; this batch is never learnt from.
            failures.report(Failure::Component(format!("reading the data: {e}")));
            values = vec![0.0; indices.len() * self.data.sample_len()];
        }
        // The batch's own indices key its random streams: the same batch is augmented (or
        // masked) the same way whichever thread builds it.
        let key = || {
            indices.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &i| {
                (h ^ i as u64).wrapping_mul(0x100_0000_01b3)
            })
        };
        if let Some(augmentation) = &self.augmentation {
            let shape = match self.data.sample_shape[..] {
                [c, h, w] => [c, h, w],
                _ => unreachable!("the trainer checks that augmented samples are images"),
            };
            augmentation.apply_batch(&mut values, shape, key());
        }
        let (n, shape) = (indices.len(), &self.data.sample_shape);
        if let Some(masking) = &self.masking {
            let seq = self.data.sample_len();
            let (masked, tokens) = masking.apply(&values, seq, key());
            let count = tokens.len();
            return Batch {
                inputs: I::from_samples(masked, n, &[2, seq], device),
                targets: BatchTargets::Classes(Tensor::from_data(
                    TensorData::new(tokens, [count]),
                    device,
                )),
                teacher: None,
                share,
            };
        }
        let teacher = self
            .teacher
            .as_ref()
            .map(|teacher| teacher.batch(&indices, &values, shape, device));
        Batch {
            inputs: I::from_samples(values, n, shape, device),
            targets: targets(&self.data, &indices, device),
            teacher,
            share,
        }
    }
}

/// The batch of the samples of `data` at `indices`, on `device`.
///
/// # Panics
/// When a sample read from a file cannot be decoded (the message names the file).
pub fn make_batch<I: BatchInput>(data: &Data, indices: &[usize], device: &Device) -> Batch<I> {
    let mut values = Vec::new();
    if let Err(e) = data.read_samples(indices, &mut values) {
        panic!("reading the data: {e}");
    }
    let inputs = I::from_samples(values, indices.len(), &data.sample_shape, device);
    Batch {
        inputs,
        targets: targets(data, indices, device),
        teacher: None,
        share: 1.0,
    }
}

/// The targets of the samples at `indices`.
fn targets(data: &Data, indices: &[usize], device: &Device) -> BatchTargets {
    let n = indices.len();
    match &data.y {
        Targets::Classes { labels, .. } => {
            let labels: Vec<i64> = indices.iter().map(|&i| labels[i] as i64).collect();
            BatchTargets::Classes(Tensor::from_data(TensorData::new(labels, [n]), device))
        }
        Targets::Values { values, names } => {
            let w = names.len();
            let mut out = Vec::with_capacity(n * w);
            for &i in indices {
                out.extend_from_slice(&values[i * w..(i + 1) * w]);
            }
            BatchTargets::Values(Tensor::from_data(TensorData::new(out, [n, w]), device))
        }
        Targets::Unlabelled { .. } => BatchTargets::None,
    }
}

/// The indices `0..len` as a dataset: what the data loader shuffles and batches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Indices(pub usize);

impl Dataset<usize> for Indices {
    fn get(&self, index: usize) -> Result<usize, DatasetError> {
        if index < self.0 {
            Ok(index)
        } else {
            Err(DatasetError::new(IndexOutOfRange { index, len: self.0 }))
        }
    }

    fn len(&self) -> usize {
        self.0
    }
}

/// The validation split's sample indices. Reading the first one marks when the epoch's
/// training ended and its validation began, for [`EpochRecord::train_seconds`](crate::EpochRecord).
pub(crate) struct ValidIndices {
    pub len: usize,
    pub started: Arc<Mutex<Option<Instant>>>,
}

impl Dataset<usize> for ValidIndices {
    fn get(&self, index: usize) -> Result<usize, DatasetError> {
        if index == 0 {
            *self.started.lock().expect("validation clock lock") = Some(Instant::now());
        }
        Indices(self.len).get(index)
    }

    fn len(&self) -> usize {
        self.len
    }
}

#[derive(Debug, thiserror::Error)]
#[error("sample index {index} is out of range for {len} samples")]
pub(crate) struct IndexOutOfRange {
    pub index: usize,
    pub len: usize,
}
