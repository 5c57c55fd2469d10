// paramtree docs — a small GPT-style language model whose output projection is tied to its
// input embedding (seed 001: Equinox's tied embedding / output linear). Used by the flagship
// demo (char_lm.cpp) and by the benchmark against PyTorch (bench/bench_autodiff.cpp).
#pragma once

#include <paramtree/nn/attention.hpp>
#include <paramtree/nn/layers.hpp>
#include <paramtree/paramtree.hpp>

#include <cstddef>
#include <vector>

namespace gpt {

namespace pt = paramtree;
namespace nn = paramtree::nn;

struct config {
    std::size_t vocab = 96;
    std::size_t context = 64; // longest sequence (positions)
    std::size_t dim = 128;
    std::size_t layers = 2;
    std::size_t heads = 4;
    bool tied = true;
};

/// GPT(embed, pos, blocks, norm, head). With `tied`, `head.weight` is a tie to `embed.weight`:
/// the embedding matrix [vocab, dim] is also the output projection (weight [out, in] = the
/// same shape, so no transpose is needed), stored and trained once.
/// An Embedding initialised as GPT-2 does, N(0, 0.02^2): with PyTorch's N(0, 1) a tied output
/// projection would start with logits of size ~sqrt(dim).
inline pt::tree small_embedding(const pt::random::key& key, std::size_t num, std::size_t dim) {
    const pt::tree e = nn::embedding(key, num, dim);
    return pt::tree_at(pt::parse_path(".weight"), e, pt::tree(e["weight"].as_array() * 0.02));
}

inline pt::tree make(const pt::random::key& key, const config& c) {
    const auto ks = pt::random::split(key, c.layers + 3);
    std::vector<pt::tree> blocks;
    for (std::size_t i = 0; i < c.layers; ++i)
        blocks.push_back(nn::transformer_block(ks[3 + i], c.dim, c.heads));
    pt::tree model = pt::record("GPT",
                                {{"embed", small_embedding(ks[0], c.vocab, c.dim)},
                                 {"pos", small_embedding(ks[1], c.context, c.dim)},
                                 {"blocks", pt::list(std::move(blocks))},
                                 {"norm", nn::layer_norm(c.dim)},
                                 {"head", nn::linear(ks[2], c.dim, c.vocab)}},
                                {{"context", static_cast<std::int64_t>(c.context)}});
    if (!c.tied) return model;
    return pt::share(model, pt::parse_path(".head.weight"), pt::parse_path(".embed.weight"));
}

/// Logits [batch, time, vocab] for int64 tokens [batch, time] (time <= context). Inside a
/// gradient call the model arrives expanded; elsewhere `expand` fills the tie in (O(1) for a
/// tree without ties). With `remat`, each block is rematerialised: a gradient call keeps only
/// the blocks' inputs and recomputes one block's activations at a time during backward.
inline pt::array logits(const pt::tree& model, const pt::array& tokens, const nn::context& ctx = {},
                        bool remat = false) {
    const pt::tree m = pt::expand(model);
    const std::size_t t = tokens.shape()[1];
    const pt::array positions = pt::array::arange(t, pt::dtype::int64);
    pt::array h = nn::apply(m["embed"], tokens, ctx.child("embed")) +
                  nn::apply(m["pos"], positions, ctx.child("pos"));
    const pt::tree blocks = m["blocks"];
    const auto block = [](const pt::tree& b, const pt::array& x, const nn::context& c) {
        return nn::apply(b, x, c);
    };
    for (std::size_t i = 0; i < blocks.size(); ++i) {
        const nn::context at = ctx.child("blocks").child(i);
        h = remat ? pt::remat(block)(blocks[i], h, at) : block(blocks[i], h, at);
    }
    h = nn::apply(m["norm"], h, ctx.child("norm"));
    return nn::apply(m["head"], h, ctx.child("head"));
}

/// Mean next-token cross-entropy: inputs [batch, time], targets [batch, time].
inline pt::array loss(const pt::tree& m, const pt::array& inputs, const pt::array& targets,
                      const nn::context& ctx = {}, bool remat = false) {
    return pt::cross_entropy(logits(m, inputs, ctx, remat), targets);
}

} // namespace gpt
