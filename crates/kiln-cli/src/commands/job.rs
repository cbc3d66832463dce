//! The MPI job a training command runs in (`mpirun -np N kiln train ...`): which rank this
//! process is, and the ranks' [`Collective`](kiln::train::Collective). Rank 0 writes the run;
//! the others train quietly in a private directory that is removed at the end.

use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Result, bail};

/// This process's place in its job.
pub struct Job {
    pub rank: usize,
    pub size: usize,
    #[cfg(feature = "mpi")]
    world: Mutex<Option<Arc<kiln::train::MpiWorld>>>,
    #[cfg(not(feature = "mpi"))]
    world: Mutex<Option<Arc<dyn kiln::train::Collective>>>,
}

static JOB: OnceLock<Job> = OnceLock::new();

/// How many processes the launcher started, from its environment (Open MPI's, or the PMI of
/// MPICH and Slurm); 1 outside a launcher.
fn launched() -> usize {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
        .unwrap_or(1)
}

impl Job {
    /// The job, joined on first use (MPI is initialised once per process).
    pub fn current() -> Result<&'static Job> {
        if let Some(job) = JOB.get() {
            return Ok(job);
        }
        let job = Self::join()?;
        Ok(JOB.get_or_init(|| job))
    }

    #[cfg(feature = "mpi")]
    fn join() -> Result<Job> {
        use kiln::train::Collective;
        if launched() <= 1 {
            return Ok(Job::alone());
        }
        let world = kiln::train::MpiWorld::init()?;
        Ok(Job {
            rank: world.rank(),
            size: world.size(),
            world: Mutex::new(Some(Arc::new(world))),
        })
    }

    #[cfg(not(feature = "mpi"))]
    fn join() -> Result<Job> {
        let n = launched();
        if n > 1 {
            bail!(
                "started as one of {n} processes (mpirun), but this kiln was built without MPI: \
                 build it with `--features mpi` (Open MPI: apt-get install libopenmpi-dev \
                 openmpi-bin libclang-dev), or run it alone"
            );
        }
        Ok(Job::alone())
    }

    fn alone() -> Job {
        Job {
            rank: 0,
            size: 1,
            world: Mutex::new(None),
        }
    }

    /// The ranks, for the trainer, in a job of several.
    pub fn collective(&self) -> Option<Arc<dyn kiln::train::Collective>> {
        let world = self.world.lock().expect("job lock");
        world
            .as_ref()
            .map(|w| w.clone() as Arc<dyn kiln::train::Collective>)
    }

    /// Whether this process writes the run (rank 0).
    pub fn writes(&self) -> bool {
        self.rank == 0
    }

    /// Refuses what a job of several ranks cannot do.
    pub fn refuse(&self, what: &str) -> Result<()> {
        if self.size > 1 {
            bail!(
                "{what} is not supported in an MPI job of {} ranks",
                self.size
            );
        }
        Ok(())
    }
}

/// `rank R of N: ` in a job of several ranks, else nothing: how a rank's messages begin.
pub fn rank_prefix() -> String {
    match JOB.get() {
        Some(job) if job.size > 1 => format!("rank {} of {}: ", job.rank, job.size),
        _ => String::new(),
    }
}

/// A failed rank ends the whole job (MPI_Abort), so that no rank waits for it; alone, nothing.
pub fn abort(code: i32) {
    #[cfg(feature = "mpi")]
    if let Some(job) = JOB.get().filter(|job| job.size > 1) {
        let world = job.world.lock().expect("job lock").clone();
        if let Some(world) = world {
            world.abort(code);
        }
    }
    let _ = code;
}

/// Leaves the job: MPI is finalised (every rank must, before it exits).
pub fn finish() {
    if let Some(job) = JOB.get() {
        job.world.lock().expect("job lock").take();
    }
}
