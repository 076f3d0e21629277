//! A team of the pool's threads held for the length of one parallel region — a model's forward pass, a training
//! step — so that the many short parallel loops inside it are shared out without waking a sleeping thread for each.
//!
//! An idle rayon worker parks within microseconds, and waking it (a futex; on a virtual machine, a halted vCPU) costs
//! tens of microseconds: more than a thread's share of one decode-step matmul of a small model. Inside [`region`] the
//! pool's other threads stay with the region's leader, spinning between loops, and claim chunks of each loop the
//! leader publishes (as llama.cpp's threads do for the length of a graph). Outside a region, or on a thread that does
//! not lead one, [`super::for_each_chunk`] goes through rayon.
//!
//! While a region runs, its members take no rayon work: rayon loops the body starts itself run on the leader alone,
//! and a second region started meanwhile (another session, another test) waits for pool threads, or runs its loops
//! with fewer of them — never deadlocks, because a leader waits only for chunks already claimed, which are running.

use core::hint::spin_loop;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

/// Idle polls a member makes before it starts yielding its core between polls (~ tens of microseconds of `pause`):
/// long enough to bridge the gaps between a forward pass's loops, short enough not to starve other threads when a
/// member waits on a leader that is busy elsewhere.
const SPINS_BEFORE_YIELD: u32 = 1 << 10;

/// The low half of [`Team::cursor`] while a loop is being published: above any chunk index.
const CLOSED: u64 = 0xffff_ffff;

/// One parallel loop: `run(i)` does chunk `i`.
struct Loop<'a> {
    run: &'a (dyn Fn(usize) + Sync),
}

/// The state a region's threads share.
pub(crate) struct Team {
    /// The current loop's number (high 32 bits) and its next unclaimed chunk (low 32 bits). A chunk is claimed by a
    /// compare-exchange, which fails if either has moved on, so a thread that read a stale loop claims nothing.
    cursor: AtomicU64,
    /// The current loop's chunk count.
    chunks: AtomicUsize,
    /// The current loop; it lives on its leader's stack until all of its chunks are finished.
    current: AtomicPtr<Loop<'static>>,
    /// Chunks of the current loop finished (or panicked).
    finished: AtomicUsize,
    /// A chunk of the current loop panicked.
    panicked: AtomicBool,
    /// The region's body has returned: members leave.
    over: AtomicBool,
}

std::thread_local! {
    /// The team whose region body this thread is running, if any.
    static LEADING: Cell<*const Team> = const { Cell::new(core::ptr::null()) };
    /// This thread is running a chunk of a team's loop.
    static IN_CHUNK: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is running a chunk of a team's loop: a loop started there runs on this thread alone (the
/// team holds one loop at a time, and its other threads are busy with the rest of the outer one).
pub(crate) fn in_chunk() -> bool {
    IN_CHUNK.get()
}

/// Runs `body` with the pool's threads held as a team: the kernels' parallel loops started by `body` (on the thread
/// it runs on) are shared with them through the team instead of through rayon's queues. Call it around work made of
/// many short loops; with one thread, or inside another region, it just runs `body`.
pub fn region<R: Send>(body: impl FnOnce() -> R + Send) -> R {
    if rayon::current_num_threads() == 1 || !LEADING.get().is_null() {
        return body();
    }
    let team = Team {
        cursor: AtomicU64::new(0),
        chunks: AtomicUsize::new(0),
        current: AtomicPtr::new(core::ptr::null_mut()),
        finished: AtomicUsize::new(0),
        panicked: AtomicBool::new(false),
        over: AtomicBool::new(false),
    };
    let body = Mutex::new(Some(body));
    let result = Mutex::new(None);
    // Every pool thread runs the closure once, and `broadcast` returns only when all have: `team` outlives them all.
    rayon::broadcast(|ctx| {
        if ctx.index() != 0 {
            team.serve();
            return;
        }
        /// Ends the region even if the body panics (rayon then re-raises the panic from `broadcast`).
        struct Leave<'t> {
            team: &'t Team,
            previous: *const Team,
        }
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                LEADING.set(self.previous);
                self.team.over.store(true, Ordering::Release);
            }
        }
        let _leave = Leave {
            team: &team,
            previous: LEADING.replace(&team),
        };
        let body = body.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(body) = body {
            let out = body();
            *result.lock().unwrap_or_else(|e| e.into_inner()) = Some(out);
        }
    });
    let out = result.into_inner().unwrap_or_else(|e| e.into_inner());
    out.expect("the region's leader ran its body")
}

/// Calls `f` with the team whose region body runs on this thread, if any.
pub(crate) fn with_leading<R>(f: impl FnOnce(Option<&Team>) -> R) -> R {
    let team = LEADING.get();
    // SAFETY: `LEADING` is non-null only while a region's body runs on this thread, inside the `broadcast` that keeps
    // its team alive; `f` runs within that body, and the reference does not outlive `f`.
    f(unsafe { team.as_ref() })
}

impl Team {
    /// Runs `run(i)` for every `i < chunks` across the team, this thread included; returns when all have finished.
    /// Panics (after all chunks are done) if one of them panicked.
    pub(crate) fn run_loop(&self, chunks: usize, run: &(dyn Fn(usize) + Sync)) {
        assert!((chunks as u64) < CLOSED, "a parallel loop of {chunks} chunks");
        let job = Loop { run };
        let number = (self.cursor.load(Ordering::Relaxed) >> 32).wrapping_add(1) & 0xffff_ffff;
        // First the new number with no chunk open, so that no claim against the previous loop's cursor can succeed
        // once the new chunk count is visible (a member that reads the count reads it after this, with acquire).
        self.cursor.store(number << 32 | CLOSED, Ordering::Relaxed);
        self.chunks.store(chunks, Ordering::Release);
        // The lifetime is erased: members dereference the loop only while one of its chunks is claimed and not
        // finished, and this function returns only after every chunk has finished.
        self.current
            .store((&raw const job).cast_mut().cast(), Ordering::Relaxed);
        self.finished.store(0, Ordering::Relaxed);
        // Opens chunk 0, publishing the stores above.
        self.cursor.store(number << 32, Ordering::Release);
        self.work();
        while self.finished.load(Ordering::Acquire) < chunks {
            spin_loop();
        }
        if self.panicked.swap(false, Ordering::Relaxed) {
            panic!("a chunk of a parallel loop panicked");
        }
    }

    /// Claims and runs chunks of the current loop until none is left unclaimed; returns whether it ran any.
    fn work(&self) -> bool {
        let mut ran = false;
        let mut cursor = self.cursor.load(Ordering::Acquire);
        loop {
            let next = (cursor & 0xffff_ffff) as usize;
            if next >= self.chunks.load(Ordering::Acquire) {
                return ran;
            }
            match self
                .cursor
                .compare_exchange_weak(cursor, cursor + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    // SAFETY: the claim succeeded, so chunk `next` of the loop published with this cursor was still
                    // unclaimed; that loop's leader waits in `run_loop` until the chunk is finished, which keeps the
                    // loop (published before the cursor, with release) alive and current.
                    let job = unsafe { &*self.current.load(Ordering::Relaxed) };
                    IN_CHUNK.set(true);
                    if catch_unwind(AssertUnwindSafe(|| (job.run)(next))).is_err() {
                        self.panicked.store(true, Ordering::Relaxed);
                    }
                    IN_CHUNK.set(false);
                    self.finished.fetch_add(1, Ordering::Release);
                    ran = true;
                    cursor = self.cursor.load(Ordering::Acquire);
                }
                Err(now) => cursor = now,
            }
        }
    }

    /// A member's part: takes chunks of each loop the leader publishes until the region is over.
    fn serve(&self) {
        let mut idle = 0u32;
        while !self.over.load(Ordering::Acquire) {
            if self.work() {
                idle = 0;
            } else if idle < SPINS_BEFORE_YIELD {
                idle += 1;
                spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::vec;
    use std::vec::Vec;

    use super::*;
    use crate::ops::for_each_chunk;

    /// A pool of its own, so the team has members whatever the machine's core count.
    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
    }

    #[test]
    fn every_chunk_of_every_loop_runs_once_with_its_index() {
        // More threads than cores, so that threads are preempted between any two steps of publishing and claiming.
        pool(8).install(|| {
            let mut data: Vec<u32> = (0..1000).collect();
            region(|| {
                for round in 0..3000u32 {
                    // Chunk lengths that do and do not divide the length, down to a single element.
                    let chunk_len = 1 + (round as usize * 37) % 150;
                    for_each_chunk(&mut data, chunk_len, |i, chunk| {
                        for (j, x) in chunk.iter_mut().enumerate() {
                            assert_eq!(*x, round * 1001 + (i * chunk_len + j) as u32);
                            *x += 1000;
                        }
                    });
                    // A region inside a region is the same region.
                    region(|| for_each_chunk(&mut data, 64, |_, chunk| chunk.iter_mut().for_each(|x| *x += 1)));
                }
            });
            let expected: Vec<u32> = (0..1000).map(|j| 3000 * 1001 + j).collect();
            assert_eq!(data, expected);
        });
    }

    #[test]
    fn a_panicking_chunk_panics_the_region_once_its_loop_is_done_and_the_pool_still_works() {
        pool(2).install(|| {
            let mut data = vec![0u8; 64];
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                region(|| {
                    for_each_chunk(&mut data, 8, |i, chunk| {
                        assert_ne!(i, 5, "chunk 5 fails");
                        chunk.fill(1);
                    })
                })
            }));
            assert!(outcome.is_err());
            // Every other chunk ran before the panic surfaced.
            assert_eq!(data.iter().filter(|&&x| x == 1).count(), 56);
            let sum = region(|| {
                for_each_chunk(&mut data, 8, |_, chunk| chunk.fill(2));
                data.iter().map(|&x| u32::from(x)).sum::<u32>()
            });
            assert_eq!(sum, 128);
        });
    }

    #[test]
    fn a_loop_inside_a_chunk_runs_on_that_chunks_thread_and_the_outer_loop_is_undisturbed() {
        pool(4).install(|| {
            let mut outer: Vec<u32> = vec![0; 256];
            region(|| {
                for round in 1..=200u32 {
                    for_each_chunk(&mut outer, 16, |i, chunk| {
                        let thread = std::thread::current().id();
                        let mut inner = vec![(0u32, None); 64];
                        for_each_chunk(&mut inner, 4, |j, part| {
                            part.fill((j as u32, Some(std::thread::current().id())));
                        });
                        assert!(inner.iter().all(|&(_, t)| t == Some(thread)));
                        let inner_sum: u32 = inner.iter().map(|&(j, _)| j).sum();
                        chunk.iter_mut().for_each(|x| *x += inner_sum + i as u32);
                    });
                    // Every element of every outer chunk was added to once per round.
                    let expected = |i: usize| round * (4 * (0..16).sum::<u32>() + (i / 16) as u32);
                    assert!(outer.iter().enumerate().all(|(i, &x)| x == expected(i)));
                }
            });
        });
    }

    #[test]
    fn zeroed_buffers_are_zero_after_the_allocator_reuses_dirty_memory() {
        pool(2).install(|| {
            region(|| {
                for len in [0, 1, 4095, 4096, 4097, 100_003] {
                    drop(vec![f32::NAN; len]);
                    let zeros = crate::ops::zeroed(len);
                    assert_eq!(zeros.len(), len);
                    assert!(zeros.iter().all(|&x| x.to_bits() == 0));
                }
            });
        });
    }
}
