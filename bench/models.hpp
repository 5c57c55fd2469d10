// paramtree benchmarks — the models timed against PyTorch (bench/torch_compare.py builds the
// same ones): an MLP and one pre-norm causal self-attention block, forward + backward.
#pragma once

#include <paramtree/paramtree.hpp>

#include <cmath>
#include <string>

namespace bench_models {

namespace pt = paramtree;

inline pt::tree linear(const pt::random::key& k, std::size_t in, std::size_t out) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in)); // PyTorch's default init
    const auto ks = pt::random::split(k, 2);
    return pt::record("Linear", {{"weight", pt::random::uniform(ks[0], {out, in}, -bound, bound)},
                                 {"bias", pt::random::uniform(ks[1], {out}, -bound, bound)}});
}

inline pt::array apply_linear(const pt::tree& l, const pt::array& x) {
    return pt::linear(x, l["weight"].as_array(), l["bias"].as_array());
}

/// `depth` Linear layers of `width`, relu between them; loss = mean squared error.
inline pt::tree mlp(std::size_t width, std::size_t depth) {
    std::vector<pt::tree> layers;
    for (std::size_t i = 0; i < depth; ++i)
        layers.push_back(linear(pt::random::fold_in(pt::random::make_key(0), i), width, width));
    return pt::list(layers);
}

inline pt::array mlp_loss(const pt::tree& m, const pt::array& x, const pt::array& y) {
    pt::array h = x;
    for (std::size_t i = 0; i < m.size(); ++i) {
        h = apply_linear(m[i], h);
        if (i + 1 < m.size()) h = pt::relu(h);
    }
    const pt::array d = h - y;
    return pt::mean(d * d);
}

/// One pre-norm causal self-attention block: x + proj(attention(layer_norm(x))).
inline pt::tree attention(std::size_t dim) {
    const auto ks = pt::random::split(pt::random::make_key(1), 4);
    return pt::record("Attention",
                      {{"norm", pt::record("LayerNorm", {{"weight", pt::array::ones({dim})},
                                                         {"bias", pt::array::zeros({dim})}})},
                       {"q", linear(ks[0], dim, dim)},
                       {"k", linear(ks[1], dim, dim)},
                       {"v", linear(ks[2], dim, dim)},
                       {"o", linear(ks[3], dim, dim)}});
}

inline pt::array causal_mask(std::size_t t) {
    return pt::array::build<bool>({t, t}, [t](std::span<bool> m) {
        for (std::size_t i = 0; i < t; ++i)
            for (std::size_t j = 0; j < t; ++j)
                m[i * t + j] = j <= i;
    });
}

inline pt::array attention_loss(const pt::tree& a, const pt::array& x, std::size_t heads,
                                const pt::array& mask) {
    const auto b = x.shape()[0], t = x.shape()[1], d = x.shape()[2], dh = d / heads;
    const pt::array h =
        pt::layer_norm(x, a["norm"]["weight"].as_array(), a["norm"]["bias"].as_array());
    auto split_heads = [&](const pt::array& z) {
        return pt::transpose(z.reshape({b, t, heads, dh}), {0, 2, 1, 3}); // [b, h, t, dh]
    };
    const pt::array q = split_heads(apply_linear(a["q"], h));
    const pt::array k = split_heads(apply_linear(a["k"], h));
    const pt::array v = split_heads(apply_linear(a["v"], h));
    pt::array s = pt::matmul(q, pt::swapaxes(k, -1, -2)) * (1.0 / std::sqrt(double(dh)));
    s = pt::where(mask, s, pt::array::full({}, -1e9, x.dtype()));
    const pt::array o = pt::matmul(pt::softmax(s), v); // [b, h, t, dh]
    const pt::array merged = pt::transpose(o, {0, 2, 1, 3}).reshape({b, t, d});
    const pt::array y = x + apply_linear(a["o"], merged);
    return pt::mean(y * y);
}

/// attention_loss with the fused operation: no head split, no mask array.
inline pt::array attention_fused_loss(const pt::tree& a, const pt::array& x, std::size_t heads) {
    const pt::array h =
        pt::layer_norm(x, a["norm"]["weight"].as_array(), a["norm"]["bias"].as_array());
    const pt::array o =
        pt::scaled_dot_product_attention(apply_linear(a["q"], h), apply_linear(a["k"], h),
                                         apply_linear(a["v"], h), heads, {.causal = true});
    const pt::array y = x + apply_linear(a["o"], o);
    return pt::mean(y * y);
}

} // namespace bench_models
