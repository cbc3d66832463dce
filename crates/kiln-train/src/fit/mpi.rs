//! The ranks of an MPI job (`mpirun -np N kiln train ...`) as a [`Collective`], through the
//! `mpi` crate (rsmpi) on the system's MPI library (Open MPI on Debian: `libopenmpi-dev`).
//!
//! MPI's handles are not thread-safe values, and the trainer calls its collectives from the
//! training thread: one thread of this module's own initialises MPI, makes every call (MPI's
//! `THREAD_SINGLE` model, no other thread ever calls it) and finalises it; the trainer reaches it
//! through a channel, a few microseconds a call against milliseconds a step.

use std::sync::mpsc::{Sender, channel};
use std::thread::JoinHandle;

use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::traits::{Communicator, CommunicatorCollectives};

use crate::TrainError;
use crate::fit::ranks::Collective;

/// A call for the MPI thread, and where its answer goes.
enum Call {
    Sum(Vec<f32>, Sender<Vec<f32>>),
    Gather(Vec<f32>, Sender<Vec<Vec<f32>>>),
    Abort(i32),
}

/// This process's place in an MPI job; dropping it finalises MPI.
pub struct MpiWorld {
    rank: usize,
    size: usize,
    /// `None` once dropping: the MPI thread then finalises and ends.
    calls: Option<Sender<Call>>,
    thread: Option<JoinHandle<()>>,
}

impl MpiWorld {
    /// Joins the MPI job this process was started in (`mpirun`); a process started alone is a
    /// job of one rank. An error when the MPI library cannot be initialised.
    pub fn init() -> Result<Self, TrainError> {
        let (calls, requests) = channel::<Call>();
        let (ready, started) = channel();
        let thread = std::thread::Builder::new()
            .name("kiln-mpi".into())
            .spawn(move || {
                let Some(universe) = mpi::initialize() else {
                    let _ = ready.send(None);
                    return;
                };
                let world = universe.world();
                let _ = ready.send(Some((world.rank() as usize, world.size() as usize)));
                for call in requests {
                    match call {
                        Call::Sum(values, reply) => {
                            let mut out = vec![0f32; values.len()];
                            world.all_reduce_into(
                                &values[..],
                                &mut out[..],
                                SystemOperation::sum(),
                            );
                            let _ = reply.send(out);
                        }
                        Call::Abort(code) => world.abort(code),
                        Call::Gather(values, reply) => {
                            let n = world.size() as usize;
                            let mut counts = vec![0i32; n];
                            world.all_gather_into(&(values.len() as i32), &mut counts[..]);
                            let displs: Vec<i32> = counts
                                .iter()
                                .scan(0, |at, &c| {
                                    let d = *at;
                                    *at += c;
                                    Some(d)
                                })
                                .collect();
                            let total: i32 = counts.iter().sum();
                            let mut all = vec![0f32; total as usize];
                            let mut parts =
                                PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
                            world.all_gather_varcount_into(&values[..], &mut parts);
                            let split = counts
                                .iter()
                                .zip(&displs)
                                .map(|(&c, &d)| all[d as usize..(d + c) as usize].to_vec())
                                .collect();
                            let _ = reply.send(split);
                        }
                    }
                }
                // The last sender dropped: MPI is finalised as `universe` drops.
            })
            .map_err(|e| TrainError::Training(format!("starting the MPI thread: {e}")))?;
        let Ok(Some((rank, size))) = started.recv() else {
            let _ = thread.join();
            return Err(TrainError::Training(
                "MPI could not be initialised (is this process started by mpirun, and is MPI \
                 initialised once only?)"
                    .into(),
            ));
        };
        Ok(Self {
            rank,
            size,
            calls: Some(calls),
            thread: Some(thread),
        })
    }

    fn call<T>(&self, make: impl FnOnce(Sender<T>) -> Call) -> T {
        let (reply, answer) = channel();
        self.calls
            .as_ref()
            .expect("MPI is running")
            .send(make(reply))
            .expect("the MPI thread is running");
        answer.recv().expect("the MPI thread answers")
    }
}

impl MpiWorld {
    /// Ends every rank of the job with `code` (MPI_Abort): what a rank that fails does, so that
    /// no other rank waits for it in a collective. Does not return.
    pub fn abort(&self, code: i32) -> ! {
        if let Some(calls) = &self.calls {
            let _ = calls.send(Call::Abort(code));
        }
        // MPI ends this process too; should it not, within a minute, end it here.
        std::thread::sleep(std::time::Duration::from_secs(60));
        std::process::exit(code)
    }
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn sum(&self, values: &mut [f32]) {
        let summed = self.call(|reply| Call::Sum(values.to_vec(), reply));
        values.copy_from_slice(&summed);
    }

    fn gather(&self, values: &[f32]) -> Vec<Vec<f32>> {
        self.call(|reply| Call::Gather(values.to_vec(), reply))
    }
}

impl Drop for MpiWorld {
    fn drop(&mut self) {
        self.calls.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
