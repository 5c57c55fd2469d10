// Tests for <paramtree/memory.hpp>: large buffers are reused from the cache, small ones never
// enter it, the idle bytes stay bounded, release gives them back, and reuse never leaks old
// values into new arrays. The cache is process-wide, so every check is a difference.
#include <catch2/catch.hpp>

#include <paramtree/array.hpp>
#include <paramtree/memory.hpp>
#include <paramtree/ops.hpp>

#include <algorithm>
#include <thread>
#include <vector>

namespace pt = paramtree;

TEST_CASE("memory: a freed large buffer is reused for the next array of its size", "[memory]") {
    const pt::memory_stats before = pt::memory_statistics();
    {
        const auto a = pt::array::full({512, 512}, 7.0); // 1 MiB
        CHECK(pt::memory_statistics().live_bytes >= before.live_bytes + (std::size_t{1} << 20));
    }
    const auto b = pt::array::zeros({512, 512});
    const pt::memory_stats after = pt::memory_statistics();
    CHECK(after.reused > before.reused);
    // The reused block holds the new array's values, not the old ones.
    const auto values = b.to_doubles();
    CHECK(std::all_of(values.begin(), values.end(), [](double v) { return v == 0.0; }));
    // A near size shares the size class (8 classes per doubling).
    const pt::memory_stats mid = pt::memory_statistics();
    { const auto c = pt::array::zeros({512, 500}); }
    { const auto d = pt::array::zeros({512, 510}); }
    CHECK(pt::memory_statistics().reused > mid.reused);
}

TEST_CASE("memory: small arrays never enter the cache", "[memory]") {
    const pt::memory_stats before = pt::memory_statistics();
    for (int i = 0; i < 100; ++i) {
        const auto a = pt::array::ones({256, 128}); // 128 KiB
        (void)(a * 2.0);
    }
    const pt::memory_stats after = pt::memory_statistics();
    CHECK(after.reused == before.reused);
    CHECK(after.mapped == before.mapped);
    CHECK(after.live_bytes == before.live_bytes);
}

TEST_CASE("memory: idle bytes stay below the most ever live; release gives them back", "[memory]") {
    pt::release_cached_memory();
    CHECK(pt::memory_statistics().cached_bytes == 0);
    const pt::memory_stats start = pt::memory_statistics();
    {
        std::vector<pt::array> held;
        for (int i = 0; i < 8; ++i)
            held.push_back(pt::array::zeros({1024, 256 + 16 * static_cast<std::size_t>(i)}));
        CHECK(pt::memory_statistics().live_bytes > start.live_bytes);
    }
    const pt::memory_stats idle = pt::memory_statistics();
    CHECK(idle.live_bytes == start.live_bytes);
    CHECK(idle.cached_bytes > 0);
    CHECK(idle.cached_bytes <= idle.peak_bytes);
    pt::release_cached_memory();
    CHECK(pt::memory_statistics().cached_bytes == 0);
    CHECK(pt::memory_statistics().live_bytes == start.live_bytes);
}

TEST_CASE("memory: threads allocating and freeing at once keep the accounts", "[memory]") {
    const std::size_t live = pt::memory_statistics().live_bytes;
    auto work = [](std::size_t seed) {
        for (std::size_t i = 0; i < 200; ++i) {
            const auto a = pt::array::full({256 + (seed + i) % 7 * 64, 512}, double(i));
            const auto b = a + 1.0;
            REQUIRE(b.item(0) == double(i) + 1.0);
        }
    };
    std::thread t1(work, 1), t2(work, 2);
    t1.join();
    t2.join();
    CHECK(pt::memory_statistics().live_bytes == live);
}
