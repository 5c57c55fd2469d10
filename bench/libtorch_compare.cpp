// paramtree benchmarks — the models of bench/models.hpp and the demo's GPT in the libtorch
// C++ frontend (Debian libtorch-dev 1.13): PyTorch's engine without Python. Same shapes, same
// timing rule as bench/torch_compare.py (median over 5 runs of the mean time per call within
// a minimum time), one thread; writes the same JSON layout. Built and run by scripts/bench.
//
// Module::parameters() lists a tensor shared by two modules twice (once per module): the
// optimizer gets the deduplicated list, or a tied weight would be stepped twice.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <functional>
#include <iostream>
#include <set>
#include <string>
#include <vector>

namespace {

double timed(const std::function<void()>& fn, double min_time = 0.3, int repetitions = 5) {
    for (int i = 0; i < 3; ++i)
        fn();
    std::vector<double> results;
    for (int r = 0; r < repetitions; ++r) {
        int n = 0;
        const auto start = std::chrono::steady_clock::now();
        double elapsed = 0;
        while (elapsed < min_time) {
            fn();
            ++n;
            elapsed =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        }
        results.push_back(elapsed / n);
    }
    std::sort(results.begin(), results.end());
    return results[results.size() / 2];
}

std::vector<torch::Tensor> unique_parameters(const torch::nn::Module& m) {
    std::vector<torch::Tensor> out;
    std::set<const void*> seen;
    for (const auto& p : m.parameters())
        if (seen.insert(p.unsafeGetTensorImpl()).second) out.push_back(p);
    return out;
}

std::function<void()> mlp(int64_t batch, int64_t width, int depth = 3) {
    auto layers = std::make_shared<std::vector<torch::nn::Linear>>();
    for (int i = 0; i < depth; ++i)
        layers->emplace_back(width, width);
    auto x = torch::randn({batch, width});
    auto y = torch::randn({batch, width});
    return [=] {
        auto h = x;
        for (std::size_t i = 0; i < layers->size(); ++i) {
            h = (*layers)[i]->forward(h);
            if (i + 1 < layers->size()) h = torch::relu(h);
        }
        auto loss = torch::mean((h - y) * (h - y));
        for (auto& l : *layers) {
            l->weight.mutable_grad() = torch::Tensor();
            l->bias.mutable_grad() = torch::Tensor();
        }
        loss.backward();
    };
}

torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, int64_t heads, const torch::Tensor& mask) {
    const auto b = q.size(0), t = q.size(1), d = q.size(2), dh = d / heads;
    auto split = [&](const torch::Tensor& z) {
        return z.reshape({b, t, heads, dh}).permute({0, 2, 1, 3});
    };
    auto s = torch::matmul(split(q), split(k).transpose(-1, -2)) * (1.0 / std::sqrt(double(dh)));
    s = torch::where(mask.index({torch::indexing::Slice(0, t), torch::indexing::Slice(0, t)}), s,
                     torch::full({}, -1e9));
    return torch::matmul(torch::softmax(s, -1), split(v)).permute({0, 2, 1, 3}).reshape({b, t, d});
}

std::function<void()> attention(int64_t b = 4, int64_t t = 64, int64_t d = 256, int64_t heads = 4) {
    auto norm = torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}));
    auto q = torch::nn::Linear(d, d), k = torch::nn::Linear(d, d), v = torch::nn::Linear(d, d),
         o = torch::nn::Linear(d, d);
    auto x = torch::randn({b, t, d});
    auto mask = torch::ones({t, t}, torch::kBool).tril();
    std::vector<torch::Tensor> params;
    for (auto* m : std::vector<torch::nn::Module*>{norm.get(), q.get(), k.get(), v.get(), o.get()})
        for (auto& p : m->parameters())
            params.push_back(p);
    return [=]() mutable {
        auto h = norm->forward(x);
        auto y = x + o->forward(causal_attention(q->forward(h), k->forward(h), v->forward(h), heads,
                                                 mask));
        auto loss = torch::mean(y * y);
        for (auto& p : params)
            p.mutable_grad() = torch::Tensor();
        loss.backward();
    };
}

struct BlockImpl : torch::nn::Module {
    BlockImpl(int64_t dim, int64_t heads, int64_t context)
        : norm1(register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})))),
          norm2(register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})))),
          q(register_module("q", torch::nn::Linear(dim, dim))),
          k(register_module("k", torch::nn::Linear(dim, dim))),
          v(register_module("v", torch::nn::Linear(dim, dim))),
          o(register_module("o", torch::nn::Linear(dim, dim))),
          fc1(register_module("fc1", torch::nn::Linear(dim, 4 * dim))),
          fc2(register_module("fc2", torch::nn::Linear(4 * dim, dim))), heads(heads),
          mask(torch::ones({context, context}, torch::kBool).tril()) {}
    torch::Tensor forward(torch::Tensor x) {
        auto h = norm1->forward(x);
        x = x +
            o->forward(causal_attention(q->forward(h), k->forward(h), v->forward(h), heads, mask));
        return x + fc2->forward(torch::gelu(fc1->forward(norm2->forward(x)), "tanh"));
    }
    torch::nn::LayerNorm norm1, norm2;
    torch::nn::Linear q, k, v, o, fc1, fc2;
    int64_t heads;
    torch::Tensor mask;
};
TORCH_MODULE(Block);

struct GPTImpl : torch::nn::Module {
    GPTImpl(int64_t vocab, int64_t context, int64_t dim, int64_t layers, int64_t heads)
        : embed(register_module("embed", torch::nn::Embedding(vocab, dim))),
          pos(register_module("pos", torch::nn::Embedding(context, dim))),
          norm(register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})))),
          head_bias(register_parameter("head_bias", torch::zeros({vocab}))) {
        torch::NoGradGuard no_grad;
        torch::nn::init::normal_(embed->weight, 0, 0.02);
        torch::nn::init::normal_(pos->weight, 0, 0.02);
        for (int64_t i = 0; i < layers; ++i)
            blocks.push_back(
                register_module("block" + std::to_string(i), Block(dim, heads, context)));
    }
    torch::Tensor forward(const torch::Tensor& x) {
        auto h = embed->forward(x) + pos->forward(torch::arange(x.size(1)));
        for (auto& b : blocks)
            h = b->forward(h);
        // The tie: the output projection is the embedding matrix itself. (libtorch has no
        // way to re-register a Linear's weight as another module's parameter; assigning
        // `head->weight = embed->weight` would leave the old tensor registered and listed.)
        return torch::linear(norm->forward(h), embed->weight, head_bias);
    }
    torch::nn::Embedding embed, pos;
    std::vector<Block> blocks;
    torch::nn::LayerNorm norm;
    torch::Tensor head_bias;
};
TORCH_MODULE(GPT);

std::function<void()> lm_step(int64_t vocab = 76, int64_t context = 64, int64_t dim = 128,
                              int64_t layers = 2, int64_t heads = 4, int64_t batch = 16) {
    GPT model(vocab, context, dim, layers, heads);
    auto params = unique_parameters(*model); // a shared tensor must be stepped once
    auto opt = std::make_shared<torch::optim::AdamW>(
        params, torch::optim::AdamWOptions(3e-4).betas({0.9, 0.99}).eps(1e-8).weight_decay(0.01));
    auto x = torch::randint(0, vocab, {batch, context});
    auto y = torch::randint(0, vocab, {batch, context});
    return [=]() mutable {
        opt->zero_grad();
        auto loss = torch::nn::functional::cross_entropy(model->forward(x).reshape({-1, vocab}),
                                                         y.reshape({-1}));
        loss.backward();
        torch::nn::utils::clip_grad_norm_(params, 1.0);
        opt->step();
    };
}

std::pair<std::function<void()>, std::function<void()>> tape_chain(int ops = 1000) {
    auto x = torch::ones({1}, torch::requires_grad());
    auto untraced = [=] {
        torch::NoGradGuard g;
        auto y = x;
        for (int i = 0; i < ops / 2; ++i)
            y = y * 1.0001 + 0.0001;
    };
    auto grad = [=]() mutable {
        auto y = x;
        for (int i = 0; i < ops / 2; ++i)
            y = y * 1.0001 + 0.0001;
        x.mutable_grad() = torch::Tensor();
        y.sum().backward();
    };
    return {untraced, grad};
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::cerr << "usage: libtorch_compare OUT.json [NAME...]\n";
        return 2;
    }
    torch::set_num_threads(1);
    torch::manual_seed(0);
    std::set<std::string> wanted(argv + 2, argv + argc);
    auto want = [&](const std::string& n) { return wanted.empty() || wanted.count(n) != 0; };
    std::vector<std::pair<std::string, double>> results;
    auto [untraced, grad] = tape_chain();
    if (want("tape/untraced")) results.emplace_back("tape/untraced", timed(untraced) / 1000);
    if (want("tape/forward_backward"))
        results.emplace_back("tape/forward_backward", timed(grad) / 1000);
    if (want("mlp/64x512")) results.emplace_back("mlp/64x512", timed(mlp(64, 512)));
    if (want("mlp/8x32")) results.emplace_back("mlp/8x32", timed(mlp(8, 32)));
    if (want("attention/4x64x256")) results.emplace_back("attention/4x64x256", timed(attention()));
    if (want("lm_step/16x64")) results.emplace_back("lm_step/16x64", timed(lm_step(), 1.0));
    std::ofstream out(argv[1]);
    out << "{\"torch_version\": \"" << TORCH_VERSION
        << " (C++ frontend)\", \"threads\": " << torch::get_num_threads() << ", \"seconds\": {";
    for (std::size_t i = 0; i < results.size(); ++i)
        out << (i ? ", " : "") << "\"" << results[i].first << "\": " << results[i].second;
    out << "}}\n";
    return 0;
}
