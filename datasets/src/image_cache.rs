//! Decoded images kept in memory up to a size cap, so that epochs after the first read the
//! images that fit from memory instead of decoding their files again.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// The bytes every cache made from one set of files may hold together.
#[derive(Debug)]
struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    /// Takes `bytes` from the budget when they fit.
    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + bytes <= self.limit).then_some(used + bytes)
            })
            .is_ok()
    }
}

/// One slot per image of an [`ImageFiles`](crate::ImageFiles): its decoded pixels (before any
/// normalisation) once read, while the shared budget lasts. A subset of the files (a split)
/// gets its own slots under the same budget; the bytes a dropped cache held go back to it.
pub struct DecodedCache {
    budget: Arc<Budget>,
    slots: Vec<OnceLock<Box<[f32]>>>,
}

impl DecodedCache {
    /// A cache for `len` images holding at most `limit_bytes` of decoded pixels.
    pub fn new(len: usize, limit_bytes: usize) -> Self {
        Self::with_budget(
            Arc::new(Budget {
                limit: limit_bytes,
                used: AtomicUsize::new(0),
            }),
            len,
        )
    }

    fn with_budget(budget: Arc<Budget>, len: usize) -> Self {
        Self {
            budget,
            slots: (0..len).map(|_| OnceLock::new()).collect(),
        }
    }

    /// A cache for `len` other images (a subset) under the same budget.
    pub fn sibling(&self, len: usize) -> Self {
        Self::with_budget(self.budget.clone(), len)
    }

    /// Image `i`'s pixels, when cached.
    pub fn get(&self, i: usize) -> Option<&[f32]> {
        self.slots[i].get().map(|pixels| &pixels[..])
    }

    /// Keeps a copy of image `i`'s pixels if the budget has room for them.
    pub fn put(&self, i: usize, pixels: &[f32]) {
        let bytes = std::mem::size_of_val(pixels);
        if self.slots[i].get().is_some() || !self.budget.take(bytes) {
            return;
        }
        if self.slots[i].set(pixels.into()).is_err() {
            // Another thread cached it first: give the bytes back.
            self.budget.used.fetch_sub(bytes, Ordering::AcqRel);
        }
    }

    /// The bytes the caches under this one's budget hold.
    pub fn used_bytes(&self) -> usize {
        self.budget.used.load(Ordering::Acquire)
    }

    /// The budget's size.
    pub fn limit_bytes(&self) -> usize {
        self.budget.limit
    }

    /// How many of this cache's images are held.
    pub fn cached(&self) -> usize {
        self.slots.iter().filter(|s| s.get().is_some()).count()
    }
}

impl Drop for DecodedCache {
    fn drop(&mut self) {
        let held: usize = self
            .slots
            .iter()
            .filter_map(OnceLock::get)
            .map(|p| std::mem::size_of_val(&p[..]))
            .sum();
        self.budget.used.fetch_sub(held, Ordering::AcqRel);
    }
}

impl fmt::Debug for DecodedCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodedCache")
            .field("limit_bytes", &self.limit_bytes())
            .field("used_bytes", &self.used_bytes())
            .field("cached", &self.cached())
            .finish()
    }
}

impl PartialEq for DecodedCache {
    /// Caches of the same size compare equal: what they hold is the files' own pixels.
    fn eq(&self, other: &Self) -> bool {
        self.limit_bytes() == other.limit_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_caps_what_every_sibling_holds_and_a_dropped_one_gives_it_back() {
        // Room for two images of 4 floats (16 bytes each).
        let cache = DecodedCache::new(3, 32);
        cache.put(0, &[1.0; 4]);
        cache.put(1, &[2.0; 4]);
        cache.put(2, &[3.0; 4]);
        assert_eq!(cache.get(1), Some(&[2.0; 4][..]));
        assert_eq!(cache.get(2), None, "past the budget");
        assert_eq!(cache.used_bytes(), 32);
        let sibling = cache.sibling(2);
        sibling.put(0, &[4.0; 4]);
        assert_eq!(sibling.get(0), None, "the budget is shared");
        drop(cache);
        assert_eq!(sibling.used_bytes(), 0);
        sibling.put(0, &[4.0; 4]);
        assert_eq!(sibling.get(0), Some(&[4.0; 4][..]));
        // A second put of a cached image takes nothing more.
        sibling.put(0, &[5.0; 4]);
        assert_eq!(
            (sibling.used_bytes(), sibling.get(0)),
            (16, Some(&[4.0; 4][..]))
        );
    }
}
