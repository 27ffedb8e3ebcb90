//! Sector storage for the simulated flash: a programmed sector's bytes, shared
//! copy-on-write, and the [`SectorPool`] that lets many flashes hold one copy of each
//! distinct sector, so a simulated fleet costs one image, not one per device.
//!
//! The pool needs `std` (a mutex, a hash map). `sim` is a host-side feature that already
//! links `std` (through `factory`, rota-manifest's `std`), and the bare-metal bootloader
//! never builds this module.

extern crate std;

use alloc::boxed::Box;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::hash::Hasher as _;
use std::collections::HashMap;
use std::hash::DefaultHasher;
use std::sync::{Mutex, PoisonError};

/// A programmed sector's bytes. Shared behind an `Arc` and copied before a write
/// (`Arc::make_mut`); boxed so that the bytes are freed when the last flash holding them
/// lets go, even while the pool still holds a `Weak` to the (small) `Arc` allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SectorBytes(pub(crate) Box<[u8]>);

pub(crate) type Sector = Arc<SectorBytes>;

/// Hands out one canonical copy of each distinct sector content to every flash that
/// shares it: thread-safe, for a fleet of simulated devices on many threads.
///
/// A flash attached to a pool ([`SimFlash::with_sector_pool`](super::SimFlash::with_sector_pool))
/// offers it each sector as the sector is completed (a write covers its last word, as
/// when an image is written sequentially) and each sector it holds when it is attached,
/// forked or asked to ([`SimFlash::share_sectors`](super::SimFlash::share_sectors)). The
/// pool looks for an equal sector by hash and then compares the bytes (a hash alone is
/// never trusted); the flash keeps the canonical copy and drops its own. A flash writing
/// to a shared sector copies it first, so sharing never changes what any flash reads.
///
/// The pool only holds `Weak` references: a sector no flash holds any more costs its
/// bytes nothing, and its entry is swept once dead entries outnumber live ones, so the
/// pool stays proportional to the distinct sectors in use. Use one pool per fleet: a
/// sector already offered to another pool is not offered again.
pub struct SectorPool {
    shards: [Mutex<Shard>; SHARDS],
}

/// Independent locks, chosen by hash, so devices completing sectors at once rarely wait.
const SHARDS: usize = 16;
/// Entries a shard tracks before its first sweep of dead ones.
const FIRST_SWEEP: usize = 64;

#[derive(Default)]
struct Shard {
    by_hash: HashMap<u64, Vec<Weak<SectorBytes>>>,
    /// Entries in `by_hash`, live or dead.
    entries: usize,
    /// Sweep dead entries when `entries` reaches this (twice the live ones at the last
    /// sweep): amortised constant time, and at most half the entries dead.
    sweep_at: usize,
}

/// What a pool holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Distinct sectors some flash still holds.
    pub live_sectors: usize,
    /// Their bytes: the memory all the pool's flashes share.
    pub live_bytes: usize,
    /// Entries tracked, dead ones not yet swept included (each a few dozen bytes).
    pub entries: usize,
}

impl SectorPool {
    /// An empty pool.
    pub fn new() -> Self {
        Self {
            shards: core::array::from_fn(|_| Mutex::default()),
        }
    }

    /// What the pool holds now.
    pub fn stats(&self) -> PoolStats {
        let mut stats = PoolStats::default();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            stats.entries += shard.entries;
            for live in shard.by_hash.values().flatten().filter_map(Weak::upgrade) {
                stats.live_sectors += 1;
                stats.live_bytes += live.0.len();
            }
        }
        stats
    }

    /// Replaces `sector` with the pool's copy of equal bytes, or makes it that copy.
    pub(crate) fn intern(&self, sector: &mut Sector) {
        // Already canonical: in this pool (or, see above, another), or a copy of one.
        if Arc::weak_count(sector) > 0 {
            return;
        }
        let mut hasher = DefaultHasher::new();
        hasher.write(&sector.0);
        let hash = hasher.finish();
        self.shards[hash as usize % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .intern(hash, sector);
    }
}

impl Default for SectorPool {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for SectorPool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SectorPool")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Shard {
    fn intern(&mut self, hash: u64, sector: &mut Sector) {
        let bucket = self.by_hash.entry(hash).or_default();
        let tracked = bucket.len();
        let mut canonical = None;
        // Dead entries met on the way are dropped.
        bucket.retain(|weak| match weak.upgrade() {
            Some(live) => {
                if canonical.is_none() && live.0 == sector.0 {
                    canonical = Some(live);
                }
                true
            }
            None => false,
        });
        match canonical {
            Some(live) => *sector = live,
            None => bucket.push(Arc::downgrade(sector)),
        }
        self.entries = self.entries + bucket.len() - tracked;
        if self.entries >= self.sweep_at {
            self.sweep();
        }
    }

    fn sweep(&mut self) {
        self.by_hash.retain(|_, bucket| {
            bucket.retain(|weak| weak.strong_count() > 0);
            !bucket.is_empty()
        });
        self.entries = self.by_hash.values().map(Vec::len).sum();
        self.sweep_at = (2 * self.entries).max(FIRST_SWEEP);
    }
}
