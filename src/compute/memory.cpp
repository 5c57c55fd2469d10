// paramtree — the buffer cache: page-mapped blocks kept by size class for reuse.
#include <paramtree/memory.hpp>

#include "compute/buffer_pool.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <string_view>
#include <utility>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define PT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PT_ASAN 1
#endif
#endif
#ifdef PT_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/lsan_interface.h>
#endif

namespace paramtree {
namespace detail {
namespace {

// Below this, glibc's own free lists serve well; above it glibc either maps and unmaps every
// block (page faults each time: a training step measured 40% slower with every block over 1
// MiB mapped) or, once its dynamic threshold has risen, carves them from one heap whose holes
// it cannot give back (a 6-block model's peak grew from 145 to 407 MiB with rematerialisation).
constexpr std::size_t smallest_cached = std::size_t{256} << 10;
constexpr std::size_t page = 4096;

/// The size class of `bytes`: whole pages, then at most 1/8 above (8 classes per doubling),
/// so nearby sizes share blocks while wasting at most 12.5%.
std::size_t size_class(std::size_t bytes) noexcept {
    const std::size_t pages = (bytes + page - 1) / page * page;
    std::size_t top = std::size_t{1} << (63 - __builtin_clzll(pages));
    const std::size_t step = std::max(page, top / 8);
    return (pages + step - 1) / step * step;
}

/// Mapped blocks hold array metadata that points into the heap (a shape's storage): the leak
/// checker must scan them as it scans the heap, or it reports what they hold as leaked.
void* map_block(std::size_t bytes) noexcept {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
#ifdef PT_ASAN
    __lsan_register_root_region(p, bytes);
#endif
    return p;
}
void unmap_block(void* p, std::size_t bytes) noexcept {
#ifdef PT_ASAN
    __lsan_unregister_root_region(p, bytes);
#endif
    munmap(p, bytes);
}

void poison(void* p, std::size_t bytes) noexcept {
#ifdef PT_ASAN
    ASAN_POISON_MEMORY_REGION(p, bytes); // a use of a freed array's buffer is still caught
#else
    (void)p, (void)bytes;
#endif
}
void unpoison(void* p, std::size_t bytes) noexcept {
#ifdef PT_ASAN
    ASAN_UNPOISON_MEMORY_REGION(p, bytes);
#else
    (void)p, (void)bytes;
#endif
}

/// The process's one cache. Global like malloc's own arenas: what it changes is where bytes
/// come from, never what any array holds.
class pool {
public:
    pool() {
        const char* v = std::getenv("PARAMTREE_BUFFER_CACHE");
        enabled_ = !(v && std::string_view(v) == "0");
    }

    /// False under PARAMTREE_BUFFER_CACHE=0: every block then comes from operator new.
    [[nodiscard]] bool enabled() const noexcept { return enabled_; }

    void* allocate(std::size_t bytes) {
        const std::size_t size = size_class(bytes);
        {
            const std::lock_guard lock(mutex_);
            size_class_state& c = classes_[size];
            c.last_use = ++clock_;
            stats_.live_bytes += size;
            peak_live_ = std::max(peak_live_, stats_.live_bytes);
            if (!c.idle.empty()) {
                void* p = c.idle.back();
                c.idle.pop_back();
                stats_.cached_bytes -= size;
                ++stats_.reused;
                unpoison(p, size);
                return p;
            }
            ++stats_.mapped;
            stats_.peak_bytes =
                std::max(stats_.peak_bytes, stats_.live_bytes + stats_.cached_bytes);
        }
        void* p = map_block(size);
        if (!p) {
            const std::lock_guard lock(mutex_);
            stats_.live_bytes -= size;
            --stats_.mapped;
            throw std::bad_alloc();
        }
        return p;
    }

    void deallocate(void* p, std::size_t bytes) noexcept {
        const std::size_t size = size_class(bytes);
        std::vector<std::pair<void*, std::size_t>> evicted;
        const bool kept = keep(p, size, evicted);
        for (const auto& [q, n] : evicted)
            unmap_block(q, n);
        if (!kept) unmap_block(p, size);
    }

    memory_stats statistics() {
        const std::lock_guard lock(mutex_);
        return stats_;
    }

    void release() {
        std::vector<std::pair<void*, std::size_t>> idle;
        {
            const std::lock_guard lock(mutex_);
            for (auto& [size, c] : classes_) {
                for (void* p : c.idle)
                    idle.emplace_back(p, size);
                c.idle.clear();
            }
            stats_.cached_bytes = 0;
        }
        for (const auto& [p, size] : idle) {
            unpoison(p, size);
            unmap_block(p, size);
        }
    }

private:
    struct size_class_state {
        std::vector<void*> idle;
        std::uint64_t last_use = 0; // the allocation clock when the class was last asked for
    };

    /// Caches `p`. A loop that repeats its sizes (a training step) then finds every block it
    /// needs from its second iteration on. Idle bytes are capped at twice the most bytes ever
    /// live: past that, the classes asked for least recently give their idle blocks up first
    /// (into `evicted`, unmapped outside the lock), and `p` itself goes if that is not enough.
    bool keep(void* p, std::size_t size,
              std::vector<std::pair<void*, std::size_t>>& evicted) noexcept {
        const std::lock_guard lock(mutex_);
        stats_.live_bytes -= size;
        const std::size_t limit = 2 * peak_live_;
        try {
            while (stats_.cached_bytes + size > limit) {
                auto oldest = classes_.end();
                for (auto it = classes_.begin(); it != classes_.end(); ++it)
                    if (it->first != size && !it->second.idle.empty() &&
                        (oldest == classes_.end() || it->second.last_use < oldest->second.last_use))
                        oldest = it;
                if (oldest == classes_.end()) return false;
                for (void* q : oldest->second.idle) {
                    unpoison(q, oldest->first);
                    evicted.emplace_back(q, oldest->first);
                    stats_.cached_bytes -= oldest->first;
                }
                oldest->second.idle.clear();
            }
            classes_[size].idle.push_back(p);
        } catch (...) { // no memory for the bookkeeping: unmap instead of caching
            return false;
        }
        stats_.cached_bytes += size;
        poison(p, size);
        return true;
    }

    std::mutex mutex_;
    bool enabled_ = true;
    std::map<std::size_t, size_class_state> classes_;
    memory_stats stats_;
    std::size_t peak_live_ = 0;
    std::uint64_t clock_ = 0;
};

pool& the_pool() {
    // Never destroyed: arrays held by other static objects may be freed after main returns.
    static pool* const p = new pool;
    return *p;
}

} // namespace

void* allocate_buffer(std::size_t bytes) {
    if (bytes < smallest_cached || !the_pool().enabled())
        return ::operator new (bytes, std::align_val_t{64});
    return the_pool().allocate(bytes);
}

void deallocate_buffer(void* p, std::size_t bytes) noexcept {
    if (bytes < smallest_cached || !the_pool().enabled())
        return ::operator delete (p, std::align_val_t{64});
    the_pool().deallocate(p, bytes);
}

} // namespace detail

memory_stats memory_statistics() {
    return detail::the_pool().statistics();
}

void release_cached_memory() {
    detail::the_pool().release();
}

} // namespace paramtree
