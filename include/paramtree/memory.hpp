// paramtree — where array buffers come from, and how much memory they hold.
// Arrays of 256 KiB and more take their buffers from a cache of page-mapped blocks: a freed
// block is kept and handed to the next array of its size class, so a training loop, which asks
// for the same sizes every step, stops asking the operating system for memory after its
// first step — no page faults, no heap fragmentation (the reason activation memory saved by
// rematerialisation is actually given back). Smaller arrays use the global operator new.
// The cache keeps at most twice as many idle bytes as the most live bytes seen (the size
// classes asked for least recently give theirs up first); `release_cached_memory()` returns
// the idle blocks at once.
// PARAMTREE_BUFFER_CACHE=0 (read once, at the first large array) turns the cache off: every
// buffer then comes from operator new, as small ones always do.
#pragma once

#include <cstddef>

namespace paramtree {

/// The buffer cache's accounts (process-wide; blocks of 256 KiB and more).
struct memory_stats {
    std::size_t live_bytes = 0;   ///< in blocks held by arrays now
    std::size_t cached_bytes = 0; ///< in idle blocks kept for reuse
    std::size_t peak_bytes = 0;   ///< the most live + cached there has been
    std::size_t reused = 0;       ///< blocks handed out from the cache
    std::size_t mapped = 0;       ///< blocks mapped fresh from the operating system
};

/// The cache's accounts now.
///
///     const pt::memory_stats before = pt::memory_statistics();
///     { const auto big = pt::array::zeros({512, 512}); }   // 1 MiB: a cached block
///     const auto again = pt::array::zeros({512, 512});    // the same block, reused
///     assert(pt::memory_statistics().reused > before.reused);
[[nodiscard]] memory_stats memory_statistics();

/// Returns every idle cached block to the operating system (live arrays are untouched).
///
///     pt::release_cached_memory();
///     assert(pt::memory_statistics().cached_bytes == 0);
void release_cached_memory();

} // namespace paramtree
