// paramtree benchmarks — reverse-mode gradients: the tape's overhead per operation on tiny
// arrays, and forward + backward of an MLP and an attention block (compared with PyTorch by
// scripts/bench, which runs bench/torch_compare.py on the same shapes in the same run).
#include "models.hpp"

#include "gpt.hpp"

#include <benchmark/benchmark.h>

extern "C" char* openblas_get_corename(void);

namespace {

namespace pt = paramtree;
namespace bm = bench_models;

constexpr int chain_ops = 1000; // operations per chain (500 multiplies + 500 adds)

pt::array chain(pt::array x) {
    for (int i = 0; i < chain_ops / 2; ++i)
        x = x * 1.0001 + 0.0001;
    return x;
}

void per_op(benchmark::State& state, double ops) {
    state.counters["ns_per_op"] =
        benchmark::Counter(ops * static_cast<double>(state.iterations()),
                           benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// An op chain on a one-element array without tracing: the kernels and allocation alone.
void BM_tape_untraced(benchmark::State& state) {
    const pt::array x{1.0f};
    for (auto _ : state)
        benchmark::DoNotOptimize(chain(x));
    per_op(state, chain_ops);
}
BENCHMARK(BM_tape_untraced)->Name("tape/untraced");

// The same chain traced and differentiated: forward recording plus the backward pass.
void BM_tape_grad(benchmark::State& state) {
    const pt::array x{1.0f};
    auto f = [](const pt::array& v) { return pt::sum(chain(v)); };
    const auto g = pt::grad(f);
    for (auto _ : state)
        benchmark::DoNotOptimize(g(x));
    per_op(state, chain_ops);
}
BENCHMARK(BM_tape_grad)->Name("tape/forward_backward");

void run_mlp(benchmark::State& state, std::size_t batch, std::size_t width) {
    const pt::tree m = bm::mlp(width, 3);
    const pt::array x = pt::random::normal(pt::random::make_key(2), {batch, width});
    const pt::array y = pt::random::normal(pt::random::make_key(3), {batch, width});
    const auto vg = pt::value_and_grad(bm::mlp_loss);
    for (auto _ : state)
        benchmark::DoNotOptimize(vg(m, x, y));
}

void BM_attention(benchmark::State& state) {
    const std::size_t b = 4, t = 64, d = 256, heads = 4;
    const pt::tree a = bm::attention(d);
    const pt::array x = pt::random::normal(pt::random::make_key(4), {b, t, d});
    const pt::array mask = bm::causal_mask(t);
    const auto vg = pt::value_and_grad(bm::attention_loss);
    for (auto _ : state)
        benchmark::DoNotOptimize(vg(a, x, heads, mask));
}
BENCHMARK(BM_attention)->Name("attention_composed/4x64x256")->Unit(benchmark::kMicrosecond);

// The same block with the fused scaled_dot_product_attention (what nn::multi_head_attention
// runs): the heads read in place, the mask applied inside the softmax.
void BM_attention_fused(benchmark::State& state) {
    const std::size_t b = 4, t = 64, d = 256, heads = 4;
    const pt::tree a = bm::attention(d);
    const pt::array x = pt::random::normal(pt::random::make_key(4), {b, t, d});
    const auto vg = pt::value_and_grad(bm::attention_fused_loss);
    for (auto _ : state)
        benchmark::DoNotOptimize(vg(a, x, heads));
}
BENCHMARK(BM_attention_fused)->Name("attention/4x64x256")->Unit(benchmark::kMicrosecond);

// float32 products at the demo step's main shapes, forward only: the matmul library's
// throughput, the denominator of the step's roofline.
/// LeNet's second convolution with its ReLU and pooling: conv2d 6 -> 16 channels, 5x5, on
/// [64, 6, 14, 14], then 2x2 max pooling; forward + backward of mean(y^2).
void BM_conv(benchmark::State& state) {
    const auto k = pt::random::split(pt::random::make_key(11), 2);
    const pt::tree layer = pt::nn::conv2d(k[0], 6, 16, {5, 5});
    const pt::array x = pt::random::normal(k[1], {64, 6, 14, 14});
    const auto vg = pt::value_and_grad([](const pt::tree& c, const pt::array& in) {
        const pt::array y = pt::max_pool2d(pt::relu(pt::nn::apply(c, in)));
        return pt::mean(y * y);
    });
    for (auto _ : state)
        benchmark::DoNotOptimize(vg(layer, x));
}
BENCHMARK(BM_conv)->Name("conv/lenet")->Unit(benchmark::kMicrosecond);

void BM_sgemm(benchmark::State& state) {
    const auto m = static_cast<std::size_t>(state.range(0));
    const auto n = static_cast<std::size_t>(state.range(1));
    const auto k = static_cast<std::size_t>(state.range(2));
    const pt::array x = pt::random::normal(pt::random::make_key(5), {m, k});
    const pt::array w = pt::random::normal(pt::random::make_key(6), {n, k});
    for (auto _ : state)
        benchmark::DoNotOptimize(pt::linear(x, w));
    state.counters["gflops"] = benchmark::Counter(2.0 * static_cast<double>(m * n * k) *
                                                      static_cast<double>(state.iterations()) / 1e9,
                                                  benchmark::Counter::kIsRate);
}
BENCHMARK(BM_sgemm)
    ->Name("sgemm")
    ->Args({1024, 128, 128})
    ->Args({1024, 512, 128})
    ->Args({1024, 128, 512})
    ->Unit(benchmark::kMicrosecond);

// One training step of the flagship demo's model (docs/examples/gpt.hpp, the default sizes of
// scripts/demo): forward, backward, global-norm clipping, AdamW update.
void BM_lm_step(benchmark::State& state) {
    const gpt::config cfg{76, 64, 128, 2, 4, true};
    const std::size_t batch = 16;
    pt::tree model = gpt::make(pt::random::make_key(0), cfg);
    const auto opt = pt::optim::chain(
        {pt::optim::clip_by_global_norm(1.0), pt::optim::adamw(3e-4, 0.9, 0.99, 1e-8, 0.01)});
    pt::tree opt_state = opt.init(model);
    const auto tokens = pt::random::bits(pt::random::make_key(1), batch * (cfg.context + 1));
    std::vector<std::int64_t> xs, ys;
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t t = 0; t < cfg.context; ++t) {
            xs.push_back(tokens[b * (cfg.context + 1) + t] % cfg.vocab);
            ys.push_back(tokens[b * (cfg.context + 1) + t + 1] % cfg.vocab);
        }
    const pt::array x = pt::array::from_vector<std::int64_t>({batch, cfg.context}, xs);
    const pt::array y = pt::array::from_vector<std::int64_t>({batch, cfg.context}, ys);
    const auto vg = pt::value_and_grad([](const pt::tree& m, const pt::array& a,
                                          const pt::array& b) { return gpt::loss(m, a, b); });
    for (auto _ : state) {
        auto [loss, grads] = vg(model, x, y);
        auto [next_model, next] = pt::optim::step(opt, grads, opt_state, model);
        model = std::move(next_model);
        opt_state = std::move(next);
    }
    state.counters["tokens_per_s"] = benchmark::Counter(static_cast<double>(batch * cfg.context) *
                                                            static_cast<double>(state.iterations()),
                                                        benchmark::Counter::kIsRate);
}
BENCHMARK(BM_lm_step)->Name("lm_step/16x64")->Unit(benchmark::kMillisecond);

// The roofline of lm_step measured rather than estimated: every matrix product one training
// step of the same model performs — forward, and both gradients of each product backward —
// issued back to back through the same matmul library and nothing else, each [batch, m, k] @
// [batch, k, n] on contiguous operands made beforehand (the step reaches some of them through
// transposed reads; this is the library's best case). A single GFLOP/s applied to all the
// FLOPs would credit the 64 attention heads' [64, 32] x [32, 64] products with the rate of a
// [1024, 128] x [128, 512] one, which no library reaches at that size.
struct product_shape {
    std::size_t batch, m, k, n, count;
};
std::vector<product_shape> lm_step_products(std::size_t tokens, std::size_t dim, std::size_t layers,
                                            std::size_t heads, std::size_t seqs, std::size_t t,
                                            std::size_t vocab) {
    std::vector<product_shape> out;
    // x [tokens, in] @ wᵀ [in, o]; backward dx = g [tokens, o] @ w [o, in], dw = gᵀ [o, tokens] @
    // x.
    const auto linear = [&](std::size_t in, std::size_t o, std::size_t count) {
        out.push_back({1, tokens, in, o, count});
        out.push_back({1, tokens, o, in, count});
        out.push_back({1, o, tokens, in, count});
    };
    const std::size_t dh = dim / heads, bh = seqs * heads;
    linear(dim, dim, 4 * layers);              // q, k, v, o
    linear(dim, 4 * dim, layers);              // the MLP's up projection
    linear(4 * dim, dim, layers);              // and its down projection
    linear(dim, vocab, 1);                     // the head (tied to the embedding)
    out.push_back({bh, t, dh, t, 2 * layers}); // scores q kᵀ; backward dp = g vᵀ
    out.push_back({bh, t, t, dh, 4 * layers}); // p v; backward dv = pᵀ g, dq = ds k, dk = dsᵀ q
    return out;
}

void BM_lm_products(benchmark::State& state) {
    const auto shapes = lm_step_products(16 * 64, 128, 2, 4, 16, 64, 76);
    std::vector<std::pair<pt::array, pt::array>> operands;
    std::vector<std::size_t> counts;
    double flops = 0;
    std::uint32_t seed = 0;
    for (const auto& p : shapes) {
        const auto dims = [&](std::size_t r, std::size_t c) {
            return p.batch == 1 ? pt::shape_type{r, c} : pt::shape_type{p.batch, r, c};
        };
        operands.emplace_back(pt::random::normal(pt::random::make_key(seed), dims(p.m, p.k)),
                              pt::random::normal(pt::random::make_key(seed + 1), dims(p.k, p.n)));
        seed += 2;
        counts.push_back(p.count);
        flops += 2.0 * static_cast<double>(p.batch * p.m * p.k * p.n * p.count);
    }
    for (auto _ : state)
        for (std::size_t i = 0; i < operands.size(); ++i)
            for (std::size_t c = 0; c < counts[i]; ++c)
                benchmark::DoNotOptimize(pt::matmul(operands[i].first, operands[i].second));
    state.counters["gflop"] = flops / 1e9;
    state.counters["gflops"] = benchmark::Counter(
        flops * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_lm_products)->Name("lm_products/16x64")->Unit(benchmark::kMillisecond);

} // namespace

int main(int argc, char** argv) {
    benchmark::AddCustomContext("openblas_core", openblas_get_corename());
    benchmark::AddCustomContext("paramtree_backend", pt::to_string(pt::backend_info()));
    // Registered by name: the names are the keys bench/torch_compare.py reports under.
    benchmark::RegisterBenchmark("mlp/64x512", [](benchmark::State& s) {
        run_mlp(s, 64, 512);
    })->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark("mlp/8x32", [](benchmark::State& s) {
        run_mlp(s, 8, 32);
    })->Unit(benchmark::kMicrosecond);
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
