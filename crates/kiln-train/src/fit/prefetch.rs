//! The next batches built while the training step runs.
//!
//! burn's data loader builds each batch on the training thread (no workers), or on worker
//! threads that hand over every batch through a channel of its own: a thread wake-up per batch,
//! measured at ~27 µs on the 2-core machines kiln is measured on, as long as building an MLP
//! batch of MNIST takes. [`Prefetch`] runs a loader on one thread of its own, ahead of the
//! training thread, and hands its batches over in groups: when [`GROUP_BATCHES`] are built or
//! building the group has taken [`GROUP_TIME`], so that small batches share a wake-up and large
//! ones (slow to build, heavy to hold) go one at a time. At most three groups exist at once: one
//! being built, one waiting, one being trained on. Batches come in the loader's order, with its
//! progress: the same epoch order, the same augmentation (keyed by each batch's indices).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::data::dataset::DatasetError;
use burn::tensor::Device;

/// The most batches handed over together.
pub(crate) const GROUP_BATCHES: usize = 8;
/// A group is handed over once building it has taken this long, however few batches it holds.
pub(crate) const GROUP_TIME: Duration = Duration::from_millis(2);

/// A loader whose batches are built on a thread of its own, ahead of the consumer.
pub(crate) struct Prefetch<O> {
    inner: Arc<dyn DataLoader<O>>,
}

impl<O> Prefetch<O> {
    pub fn new(inner: Arc<dyn DataLoader<O>>) -> Arc<Self> {
        Arc::new(Self { inner })
    }
}

impl<O: Send + 'static> DataLoader<O> for Prefetch<O> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<O> + 'a> {
        Box::new(PrefetchIter::start(self.inner.clone()))
    }

    fn num_items(&self) -> usize {
        self.inner.num_items()
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<O>> {
        Prefetch::new(self.inner.to_device(device))
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<O>> {
        Prefetch::new(self.inner.slice(start, end))
    }
}

/// A batch (or the error building it) and the loader's progress after it.
type Item<O> = (Result<O, DatasetError>, Progress);

struct PrefetchIter<O> {
    groups: Option<Receiver<Vec<Item<O>>>>,
    ready: VecDeque<Item<O>>,
    progress: Progress,
    builder: Option<JoinHandle<()>>,
}

impl<O: Send + 'static> PrefetchIter<O> {
    fn start(inner: Arc<dyn DataLoader<O>>) -> Self {
        let progress = Progress::new(0, inner.num_items(), None);
        // One group waiting while the next is built: the builder stays at most two ahead.
        let (sender, groups) = sync_channel::<Vec<Item<O>>>(1);
        let builder = std::thread::Builder::new()
            .name("kiln-loader".into())
            .spawn(move || {
                let mut batches = inner.iter();
                let mut group = Vec::with_capacity(GROUP_BATCHES);
                let mut started = Instant::now();
                while let Some(batch) = batches.next() {
                    group.push((batch, batches.progress()));
                    if group.len() == GROUP_BATCHES || started.elapsed() >= GROUP_TIME {
                        if sender.send(std::mem::take(&mut group)).is_err() {
                            return; // The consumer stopped early.
                        }
                        started = Instant::now();
                    }
                }
                if !group.is_empty() {
                    let _ = sender.send(group);
                }
            })
            .expect("spawning the loader thread");
        Self {
            groups: Some(groups),
            ready: VecDeque::new(),
            progress,
            builder: Some(builder),
        }
    }
}

impl<O> Iterator for PrefetchIter<O> {
    type Item = Result<O, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ready.is_empty() {
            match self.groups.as_ref()?.recv() {
                Ok(group) => self.ready.extend(group),
                Err(_) => {
                    // The builder is done, or panicked: its panic is the consumer's.
                    self.groups = None;
                    if let Some(Err(panic)) = self.builder.take().map(JoinHandle::join) {
                        std::panic::resume_unwind(panic);
                    }
                    return None;
                }
            }
        }
        let (batch, progress) = self.ready.pop_front()?;
        self.progress = progress;
        Some(batch)
    }
}

impl<O> DataLoaderIterator<O> for PrefetchIter<O> {
    fn progress(&self) -> Progress {
        self.progress.clone()
    }
}

impl<O> Drop for PrefetchIter<O> {
    fn drop(&mut self) {
        // Closing the channel stops the builder at its next hand-over.
        self.groups = None;
        if let Some(builder) = self.builder.take() {
            let _ = builder.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::data::dataloader::DataLoaderBuilder;
    use burn::data::dataloader::batcher::Batcher;
    use burn::data::dataset::InMemDataset;
    use std::thread::ThreadId;

    /// Batches of indices, each with the thread that built it.
    #[derive(Clone)]
    struct Recording {
        panic_at: Option<usize>,
    }

    impl Batcher<usize, (Vec<usize>, ThreadId)> for Recording {
        fn batch(&self, items: Vec<usize>, _device: &Device) -> (Vec<usize>, ThreadId) {
            if self.panic_at.is_some_and(|at| items.contains(&at)) {
                panic!("no batch with item {}", self.panic_at.unwrap());
            }
            (items, std::thread::current().id())
        }
    }

    fn loader(
        len: usize,
        batch: usize,
        panic_at: Option<usize>,
    ) -> Arc<dyn DataLoader<(Vec<usize>, ThreadId)>> {
        DataLoaderBuilder::new(Recording { panic_at })
            .batch_size(batch)
            .set_device(Device::flex())
            .build(InMemDataset::new((0..len).collect::<Vec<usize>>()))
    }

    type Seen = Vec<(Vec<usize>, ThreadId, usize)>;

    fn drain(loader: &dyn DataLoader<(Vec<usize>, ThreadId)>) -> Seen {
        let mut iter = loader.iter();
        let mut seen = Vec::new();
        while let Some(batch) = iter.next() {
            let (items, thread) = batch.unwrap();
            seen.push((items, thread, iter.progress().items_processed));
        }
        seen
    }

    #[test]
    fn batches_come_in_order_with_their_progress_built_on_another_thread() {
        // Sizes around the group size: none, one, one group, one more, several groups.
        for batches in [
            0,
            1,
            GROUP_BATCHES,
            GROUP_BATCHES + 1,
            3 * GROUP_BATCHES + 5,
        ] {
            let len = batches * 4;
            let plain = drain(&*loader(len, 4, None));
            let prefetched = drain(&*Prefetch::new(loader(len, 4, None)));
            assert_eq!(prefetched.len(), batches);
            for ((items, _, progress), (p_items, thread, p_progress)) in
                plain.iter().zip(&prefetched)
            {
                assert_eq!((items, progress), (p_items, p_progress));
                assert_ne!(*thread, std::thread::current().id());
            }
            assert_eq!(Prefetch::new(loader(len, 4, None)).num_items(), len);
        }
    }

    #[test]
    fn a_consumer_stopping_early_stops_the_builder() {
        let prefetch = Prefetch::new(loader(4000, 4, None));
        let mut iter = prefetch.iter();
        assert_eq!(iter.next().unwrap().unwrap().0, [0, 1, 2, 3]);
        drop(iter); // Joins the builder: returns only because the builder stops.
    }

    #[test]
    #[should_panic(expected = "no batch with item 21")]
    fn a_panic_building_a_batch_reaches_the_consumer() {
        drain(&*Prefetch::new(loader(40, 4, Some(21))));
    }
}
