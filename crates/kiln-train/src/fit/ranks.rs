//! Data-parallel training over processes (MPI ranks, Horovod's way): every rank holds the same
//! model, reads its part of each global batch and, every step, the ranks sum their gradients
//! and share their outputs, so that every rank takes the optimiser step one process would take
//! over the global batch and every rank's metrics see the whole batch.
//!
//! The layout is the one `--devices` uses ([`replica_layout`](crate::fit::replicas)), with
//! every device of every rank a replica: with `D` devices a rank, step `k` hands device `d` of
//! rank `r` the `(r * D + d)`-th chunk of the one-process run's batch `k`, and each part's loss
//! is scaled by its share of the step's samples, so that the summed gradients are the global
//! batch's mean. Inside a rank the devices' gradients are summed first (on its first device),
//! then the ranks'.

use std::sync::Arc;

use burn::data::dataset::{Dataset, DatasetError};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::data::batch::{BatchTargets, IndexOutOfRange};
use crate::epoch_end::hook::EpochOrder;
use crate::fit::replicas::Replicas;
use crate::fit::steps::StepOutput;

/// What the ranks of a job exchange: implemented over MPI by `kiln_train::mpi::MpiWorld`
/// (cargo feature `mpi`). Every rank calls the same methods in the same order.
pub trait Collective: Send + Sync {
    /// This process's rank, from 0.
    fn rank(&self) -> usize;
    /// How many ranks the job has.
    fn size(&self) -> usize;
    /// Sums `values` element-wise over the ranks, in place; every rank gives the same length.
    fn sum(&self, values: &mut [f32]);
    /// Every rank's `values` (their lengths may differ), in rank order, on every rank.
    fn gather(&self, values: &[f32]) -> Vec<Vec<f32>>;
}

/// A job of one process (several devices of one process train as its one rank).
pub(crate) struct OneProcess;

impl Collective for OneProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn sum(&self, _values: &mut [f32]) {}
    fn gather(&self, values: &[f32]) -> Vec<Vec<f32>> {
        vec![values.to_vec()]
    }
}

/// What a rank of a job that had no reason to stop fails with when another rank stopped (an
/// error there, which that rank reports): its run must not look finished.
#[derive(Debug, thiserror::Error)]
#[error("another rank of the MPI job stopped (its own error says why)")]
struct OtherRankStopped;

/// Stops this rank because another did, as a failure.
pub(crate) fn another_rank_stopped(interrupter: &burn::train::Interrupter) {
    interrupter.fail(DatasetError::new(OtherRankStopped));
}

/// Floats summed per call: large models' gradients go in buckets of this many (16 MB).
const BUCKET: usize = 4 << 20;

/// The ranks of a job and this one's part of the data.
#[derive(Clone)]
pub(crate) struct Ranks {
    pub comm: Arc<dyn Collective>,
    /// This rank's devices (the same count on every rank), the first holding the model.
    pub devices: Vec<Device>,
    /// Every device of every rank as a replica of one global batch (rank-major:
    /// `batch_size / (ranks * devices)` samples each).
    pub replicas: Replicas,
}

impl Ranks {
    pub fn new(
        comm: Arc<dyn Collective>,
        devices: Vec<Device>,
        batch_size: usize,
    ) -> Result<Self, crate::TrainError> {
        let (n, d) = (comm.size(), devices.len().max(1));
        let all = vec![devices[0].clone(); n * d];
        let replicas = Replicas::new(all, batch_size).map_err(|_| {
            let over = match d {
                1 => format!("{n} ranks"),
                _ => format!("{n} ranks x {d} devices"),
            };
            crate::TrainError::option(
                "batch_size",
                format!("{batch_size} is the global batch and must split evenly over the {over}"),
            )
        })?;
        Ok(Self {
            comm,
            devices,
            replicas,
        })
    }

    /// This rank's data: its devices' slices of each epoch's `order`.
    pub fn slice(&self, order: EpochOrder) -> RankSlice {
        RankSlice {
            order,
            replicas: self.replicas.clone(),
            first: self.comm.rank() * self.devices.len(),
            count: self.devices.len(),
        }
    }

    /// Each of this rank's devices' part of its slice of a `len`-sample epoch, as bounds
    /// within the slice.
    pub fn device_bounds(&self, len: usize) -> Vec<(usize, usize)> {
        let first = self.comm.rank() * self.devices.len();
        let slices = &self.replicas.slices(len)[first..first + self.devices.len()];
        let start = slices[0].0;
        slices.iter().map(|(s, e)| (s - start, e - start)).collect()
    }
}

/// One rank's part of each epoch's order: its devices' slices (contiguous) of the layout
/// [`EpochOrder`] makes for every device of every rank as replicas.
pub(crate) struct RankSlice {
    order: EpochOrder,
    replicas: Replicas,
    /// The first of this rank's replicas, and how many it has.
    first: usize,
    count: usize,
}

impl RankSlice {
    fn bounds(&self) -> (usize, usize) {
        let slices = self.replicas.slices(self.order.len());
        (slices[self.first].0, slices[self.first + self.count - 1].1)
    }
}

impl Dataset<usize> for RankSlice {
    fn get(&self, index: usize) -> Result<usize, DatasetError> {
        let (start, end) = self.bounds();
        if start + index >= end {
            return Err(DatasetError::new(IndexOutOfRange {
                index,
                len: end - start,
            }));
        }
        self.order.get(start + index)
    }

    fn len(&self) -> usize {
        let (start, end) = self.bounds();
        end - start
    }
}

/// Sums the ranks' gradients of `model`'s trainable parameters: `grads` of this rank's part
/// of the step, or `None` when this rank has no part in it (the epoch's last step can be
/// smaller than the ranks); zeros stand in for it. Also sums `flags` (one float each), so that
/// every rank learns what any rank raised in the same call.
pub(crate) fn sum_gradients<M: Module>(
    model: &M,
    grads: Option<GradientsParams>,
    flags: &mut [f32],
    comm: &dyn Collective,
    device: &Device,
) -> GradientsParams {
    if comm.size() == 1 {
        return grads.unwrap_or_default();
    }
    let mut gather = Flatten {
        grads,
        values: Vec::new(),
        parts: Vec::new(),
    };
    model.visit(&mut gather);
    let mut values = gather.values;
    values.extend_from_slice(flags);
    for bucket in values.chunks_mut(BUCKET) {
        comm.sum(bucket);
    }
    let n = values.len() - flags.len();
    flags.copy_from_slice(&values[n..]);
    let mut summed = GradientsParams::new();
    let mut at = 0;
    for part in gather.parts {
        let len: usize = part.shape.iter().product();
        part.register(&mut summed, &values[at..at + len], device);
        at += len;
    }
    summed
}

/// A trainable parameter's place in the flat buffer.
struct Part {
    id: burn::module::ParamId,
    shape: Vec<usize>,
}

impl Part {
    fn register(&self, grads: &mut GradientsParams, values: &[f32], device: &Device) {
        macro_rules! put {
            ($d:literal) => {{
                let data = TensorData::new(values.to_vec(), self.shape.clone());
                grads.register::<$d>(self.id, Tensor::from_data(data, device))
            }};
        }
        match self.shape.len() {
            1 => put!(1),
            2 => put!(2),
            3 => put!(3),
            4 => put!(4),
            5 => put!(5),
            d => unreachable!("a parameter of {d} dimensions"),
        }
    }
}

/// Lays every trainable parameter's gradient (or zeros) end to end.
struct Flatten {
    grads: Option<GradientsParams>,
    values: Vec<f32>,
    parts: Vec<Part>,
}

impl ModuleVisitor for Flatten {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = param.val();
        if !tensor.is_require_grad() {
            return;
        }
        let shape = tensor.dims().to_vec();
        let len: usize = shape.iter().product();
        match self.grads.as_mut().and_then(|g| g.remove::<D>(param.id)) {
            Some(grad) => self.values.extend(
                grad.into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .expect("f32 gradients"),
            ),
            None => self.values.extend(std::iter::repeat_n(0.0, len)),
        }
        self.parts.push(Part {
            id: param.id,
            shape,
        });
    }
}

/// The step's outputs over every rank's part, in rank order (the one-process batch's order):
/// what each rank hands its metrics, so that every rank's history is the whole job's. `local`
/// holds this rank's devices' parts in device order (none on a rank without a part in this
/// step).
pub(crate) fn gather_outputs(
    local: &[StepOutput],
    comm: &dyn Collective,
    device: &Device,
) -> Option<StepOutput> {
    if comm.size() == 1 {
        return join_parts(local, device);
    }
    // Each rank sends [kind, rows, width, loss, outputs..., targets...]: its parts' outputs
    // then their targets, the loss their mean.
    let (mut outputs, mut targets) = (Vec::new(), Vec::new());
    let (mut rows, mut width, mut loss_sum) = (0, 0, 0.0f64);
    let mut kind = 0.0; // 0 none, 1 classes, 2 values
    for step in local {
        let [r, w] = step.output.dims();
        let loss: f32 = step.loss.clone().into_scalar();
        (rows, width) = (rows + r, w);
        loss_sum += f64::from(loss) * r as f64;
        outputs.extend(
            step.output
                .clone()
                .into_data()
                .convert::<f32>()
                .iter::<f32>(),
        );
        match &step.targets {
            BatchTargets::Classes(c) => {
                kind = 1.0;
                targets.extend(c.clone().into_data().iter::<i64>().map(|v| v as f32));
            }
            BatchTargets::Values(v) => {
                kind = 2.0;
                targets.extend(v.clone().into_data().convert::<f32>().iter::<f32>());
            }
            BatchTargets::None => {}
        }
    }
    let loss = match rows {
        0 => 0.0,
        r => (loss_sum / r as f64) as f32,
    };
    let mut message = vec![kind, rows as f32, width as f32, loss];
    message.extend(outputs);
    message.extend(targets);
    let parts = comm.gather(&message);
    let (mut outputs, mut targets) = (Vec::new(), Vec::new());
    let (mut rows, mut width, mut loss_sum, mut kind, mut target_width) = (0, 0, 0.0f64, 0, 0);
    for part in &parts {
        let (k, r, w) = (part[0] as usize, part[1] as usize, part[2] as usize);
        if r == 0 {
            continue;
        }
        kind = k;
        width = w;
        rows += r;
        loss_sum += part[3] as f64 * r as f64;
        outputs.extend_from_slice(&part[4..4 + r * w]);
        let rest = &part[4 + r * w..];
        target_width = rest.len() / r;
        targets.extend_from_slice(rest);
    }
    if rows == 0 {
        return None;
    }
    let output = Tensor::from_data(TensorData::new(outputs, [rows, width]), device);
    let targets = match kind {
        1 => {
            let ids: Vec<i64> = targets.iter().map(|&v| v as i64).collect();
            BatchTargets::Classes(Tensor::<1, Int>::from_data(
                TensorData::new(ids, [rows]),
                device,
            ))
        }
        2 => BatchTargets::Values(Tensor::from_data(
            TensorData::new(targets, [rows, target_width]),
            device,
        )),
        _ => BatchTargets::None,
    };
    Some(StepOutput {
        loss: Tensor::from_data(
            TensorData::new(vec![(loss_sum / rows as f64) as f32], [1]),
            device,
        ),
        output,
        targets,
        share: 1.0,
    })
}

/// One process's devices' parts of a step as one output on `device`, without leaving the
/// devices (no copy to host memory, no wait): outputs and targets in device order, the loss the
/// rows' mean.
fn join_parts(parts: &[StepOutput], device: &Device) -> Option<StepOutput> {
    if parts.len() <= 1 {
        return parts.first().cloned();
    }
    let rows: Vec<usize> = parts.iter().map(|p| p.output.dims()[0]).collect();
    let total: usize = rows.iter().sum();
    let loss = parts
        .iter()
        .zip(&rows)
        .map(|(p, &r)| p.loss.clone().to_device(device) * (r as f32 / total as f32))
        .reduce(|a, b| a + b)?;
    let output = Tensor::cat(
        parts
            .iter()
            .map(|p| p.output.clone().to_device(device))
            .collect(),
        0,
    );
    let targets = match &parts[0].targets {
        BatchTargets::Classes(_) => BatchTargets::Classes(Tensor::cat(
            parts
                .iter()
                .filter_map(|p| match &p.targets {
                    BatchTargets::Classes(c) => Some(c.clone().to_device(device)),
                    _ => None,
                })
                .collect(),
            0,
        )),
        BatchTargets::Values(_) => BatchTargets::Values(Tensor::cat(
            parts
                .iter()
                .filter_map(|p| match &p.targets {
                    BatchTargets::Values(v) => Some(v.clone().to_device(device)),
                    _ => None,
                })
                .collect(),
            0,
        )),
        BatchTargets::None => BatchTargets::None,
    };
    Some(StepOutput {
        loss,
        output,
        targets,
        share: 1.0,
    })
}
