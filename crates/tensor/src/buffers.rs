//! A small cache of large `f32` buffers.
//!
//! Fresh large allocations are expensive on the development VM: every 4 KiB page of a new
//! buffer costs a page fault on first touch (measured ~0.4 ms per MiB, i.e. a 150 MiB batch of
//! per-example gradients pays ~60 ms before any arithmetic). A training loop allocates the same
//! shapes every step, so buffers of at least [`MIN_POOLED_FLOATS`] that tensors or kernels
//! release are kept here and handed out again (zero-filled, which is a `memset` on memory
//! already mapped). The cache holds at most [`MAX_POOLED_BYTES`]; [`release_cached_buffers`]
//! empties it.

use std::sync::Mutex;

/// Buffers smaller than this (1 MiB) go straight to the system allocator.
pub const MIN_POOLED_FLOATS: usize = 1 << 18;
/// Upper bound on the bytes the cache keeps (1 GiB).
pub const MAX_POOLED_BYTES: usize = 1 << 30;

static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

fn lock() -> std::sync::MutexGuard<'static, Vec<Vec<f32>>> {
    // A panic while holding the lock cannot leave the list inconsistent; keep using it.
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A cached buffer with capacity in `n..2n`, if any (smallest first).
fn take(n: usize) -> Option<Vec<f32>> {
    let mut pool = lock();
    let best = pool
        .iter()
        .enumerate()
        .filter(|(_, v)| v.capacity() >= n && v.capacity() < 2 * n)
        .min_by_key(|(_, v)| v.capacity())
        .map(|(i, _)| i)?;
    Some(pool.swap_remove(best))
}

/// A zero-filled buffer of `n` floats.
pub(crate) fn zeroed(n: usize) -> Vec<f32> {
    if n >= MIN_POOLED_FLOATS
        && let Some(mut v) = take(n)
    {
        v.clear();
        v.resize(n, 0.0);
        return v;
    }
    vec![0.0; n]
}

/// A buffer of `n` floats for a kernel that writes every element before reading any: a
/// cached buffer keeps its old contents (only a grown tail is zeroed), which saves the
/// single-threaded `memset` that [`zeroed`] pays on the calling thread. Still safe Rust (the
/// floats are initialised, just stale); a kernel that left an element unwritten would return
/// another tensor's value, so only call this where the kernel's loops cover the whole output
/// (tests compare every such kernel against references on random shapes).
pub(crate) fn for_overwrite(n: usize) -> Vec<f32> {
    if n >= MIN_POOLED_FLOATS
        && let Some(mut v) = take(n)
    {
        if v.len() >= n {
            v.truncate(n);
        } else {
            v.resize(n, 0.0);
        }
        return v;
    }
    vec![0.0; n]
}

/// A copy of `src`.
pub(crate) fn copied(src: &[f32]) -> Vec<f32> {
    if src.len() >= MIN_POOLED_FLOATS
        && let Some(mut v) = take(src.len())
    {
        v.clear();
        v.extend_from_slice(src);
        return v;
    }
    src.to_vec()
}

/// Returns a buffer to the cache (or to the allocator if it is small or the cache is full).
pub(crate) fn recycle(v: Vec<f32>) {
    if v.capacity() < MIN_POOLED_FLOATS {
        return;
    }
    let mut pool = lock();
    let held: usize = pool.iter().map(|b| b.capacity() * 4).sum();
    if held + v.capacity() * 4 <= MAX_POOLED_BYTES {
        pool.push(v);
    }
}

/// Frees every cached buffer (e.g. after training, or before a memory-hungry phase).
pub fn release_cached_buffers() {
    lock().clear();
}

/// Bytes currently held by the cache.
pub fn cached_bytes() -> usize {
    lock().iter().map(|b| b.capacity() * 4).sum()
}

/// Makes the process's allocator keep freed memory instead of returning every large buffer to
/// the kernel. Returns whether the setting took effect.
///
/// **Why.** glibc's `malloc` serves allocations above its mmap threshold (at most 32 MiB) with a
/// fresh `mmap` and frees them with `munmap`. A training step allocates and frees activation and
/// gradient buffers of tens of MiB, so every step page-faults all of them in again, and each
/// fault on a zero page costs a TLB shootdown across cores. Measured on the Tramer-Boneh CIFAR-10
/// CNN at batch 256 (2 cores): the non-private step went from 228 to 385 examples/s and the
/// book-keeping DP step from 178 to 260 (`docs/benchmarks.md`). With this setting large blocks
/// come from the heap and freed memory stays mapped for the next step (`M_MMAP_MAX = 0`,
/// `M_TRIM_THRESHOLD` = 2 GiB): the resident size stays near the step's peak instead of
/// shrinking between steps.
///
/// It changes a process-wide setting, so the library never calls it on its own: binaries do
/// (the `sparsedp` CLI, the benchmarks). A no-op returning `false` off glibc.
pub fn retain_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // From <malloc.h>.
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_MAX: i32 = -4;
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // SAFETY: mallopt only adjusts allocator parameters; both values are in range.
        unsafe { mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, i32::MAX) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The only test of the crate that touches the global cache, so none races with it.
    #[test]
    fn buffers_are_reused_zeroed_and_bounded() {
        release_cached_buffers();
        let n = MIN_POOLED_FLOATS + 5;
        let mut v = zeroed(n);
        v.iter_mut().for_each(|x| *x = 7.0);
        let ptr = v.as_ptr();
        recycle(v);
        assert!(cached_bytes() >= n * 4);
        // Same size: the cached buffer comes back, zero-filled.
        let w = zeroed(n);
        assert_eq!(w.as_ptr(), ptr);
        assert!(w.iter().all(|&x| x == 0.0));
        assert_eq!(cached_bytes(), 0);
        // A much larger request does not take a buffer less than half its size.
        recycle(w);
        let big = zeroed(3 * n);
        assert_ne!(big.as_ptr(), ptr);
        let c = copied(&vec![1.5; n]);
        assert_eq!(c.as_ptr(), ptr);
        assert!(c.iter().all(|&x| x == 1.5));
        // Small buffers are never cached; dropping a tensor recycles its buffer.
        recycle(vec![0.0; 10]);
        assert_eq!(cached_bytes(), 0);
        drop(crate::Tensor::zeros(&[n]));
        assert!(cached_bytes() >= n * 4);
        release_cached_buffers();
        assert_eq!(cached_bytes(), 0);
        drop((big, c));
    }
}
