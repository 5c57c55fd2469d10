// Tests for <paramtree/backend.hpp>: what the process reports about its matmul library and
// kernels, and that products agree across the libraries (scripts/test also runs the whole
// suite under PARAMTREE_MATMUL=openblas and under every PARAMTREE_ISA level the CPU has).
#include <catch2/catch.hpp>

#include <paramtree/backend.hpp>
#include <paramtree/ops.hpp>
#include <paramtree/random.hpp>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>
#include <string>

namespace pt = paramtree;

TEST_CASE("backend: the report names the library, its kernels, the ISA and the threads",
          "[backend]") {
    const pt::compute_backend& b = pt::backend_info();
    CHECK(&b == &pt::backend_info()); // decided once
    CHECK(!b.name.empty());
    CHECK(!b.kernel.empty());
    CHECK(b.threads >= 1);
    CHECK((b.isa.starts_with("sse2") || b.isa.starts_with("avx2") || b.isa.starts_with("avx512")));
    const char* forced = std::getenv("PARAMTREE_MATMUL");
    if (forced != nullptr && std::string(forced) == "openblas") {
        CHECK(b.library == pt::matmul_library::openblas);
        CHECK(b.name == "OpenBLAS");
    }
    if (b.library == pt::matmul_library::onednn) {
        CHECK(b.name.starts_with("oneDNN "));
        CHECK(b.warning.empty());
    }
    const char* isa = std::getenv("PARAMTREE_ISA");
    if (isa != nullptr && *isa != '\0') CHECK(b.isa.starts_with(isa));
    const std::string line = pt::to_string(b);
    CHECK(line.starts_with("matmul: " + b.name + " (" + b.kernel + "), kernels: "));
    // The suite sets OMP_NUM_THREADS: kept, and said.
    if (std::getenv("PARAMTREE_NUM_THREADS") == nullptr &&
        std::getenv("OMP_NUM_THREADS") != nullptr)
        CHECK(b.threads_reason == "OMP_NUM_THREADS");
    CHECK(line.ends_with("(" + b.threads_reason + ")"));
}

TEST_CASE("backend: the default thread count leaves out CPUs other processes keep busy",
          "[backend][threads]") {
    const pt::thread_budget idle = pt::default_thread_budget();
    CHECK(idle.allowed >= 1);
    CHECK(idle.quota >= 0);
    CHECK(idle.threads >= 1);
    CHECK(idle.threads <= idle.allowed);
    // A CPU-bound competitor is runnable in every sample: counted as busy, and the budget
    // never counts it as a free CPU.
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        volatile unsigned long spin = 0;
        for (;;)
            spin = spin + 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const pt::thread_budget busy = pt::default_thread_budget();
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    CHECK(busy.busy >= 1);
    const int usable = busy.quota > 0 ? std::min(busy.allowed, busy.quota) : busy.allowed;
    CHECK(busy.threads == std::max(1, usable - busy.busy));
    CHECK(busy.threads <= std::max(1, usable - 1));
}

TEST_CASE("backend: float32 products match float64 ones at every shape class", "[backend]") {
    // Tiny, skinny, strided-transposed and large products through whichever library runs.
    const std::vector<std::array<std::size_t, 3>> shapes = {
        {1, 1, 1}, {3, 5, 7}, {8, 32, 32}, {64, 64, 32}, {1024, 96, 128}, {130, 1, 257}};
    for (const auto& [m, k, n] : shapes) {
        INFO(m << "x" << k << "x" << n);
        const pt::array a = pt::random::normal(pt::random::make_key(1), {m, k}, pt::dtype::float64);
        const pt::array b = pt::random::normal(pt::random::make_key(2), {k, n}, pt::dtype::float64);
        const pt::array exact = pt::matmul(a, b);
        const pt::array f32 =
            pt::matmul(a.astype(pt::dtype::float32), b.astype(pt::dtype::float32));
        CHECK(pt::array_equal(f32.astype(pt::dtype::float64), exact, 1e-4,
                              1e-4 * std::sqrt(static_cast<double>(k))));
        // x wᵀ through the transpose flag, against the explicit transpose.
        const pt::array w = pt::transpose(b);
        CHECK(pt::array_equal(pt::linear(a, w), exact, 1e-12, 1e-12));
    }
}
