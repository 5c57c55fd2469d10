// paramtree — fused scaled dot-product attention, forward and backward.
// One differentiable operation for softmax(q kᵀ · scale + causal mask) v over every head: the
// heads are read in place from [batch, time, heads·dh] rows (no split or merge transposes), the
// mask is applied while the softmax runs (no [B, H, T, T] mask array), and the backward pass
// is four batched matrix products over every head and one softmax-gradient pass.
#pragma once

#include <cstddef>

#include <paramtree/array.hpp>

namespace paramtree {

/// Options of `scaled_dot_product_attention`.
struct attention_options {
    /// Position i attends to positions j <= i only (GPT-style decoders).
    bool causal = false;
    /// The factor on q·kᵀ; 0 means 1/sqrt(dh) (the default of every Transformer).
    double scale = 0;
};

/// softmax(q kᵀ · scale (+ causal mask)) v for `heads` heads of width dh = D / heads, with q,
/// k, v of shape [B, T, D] or [T, D] (one float dtype; k and v may have their own length S,
/// [B, S, D]) and a result of q's shape: the heads' outputs side by side, as
/// `torch.nn.functional.scaled_dot_product_attention` after merging heads. Differentiable in
/// q, k and v. Throws shape_error for shapes that do not fit or `heads` not dividing D.
///
///     const auto q = pt::random::normal(k1, {2, 16, 64}), k = pt::random::normal(k2, {2, 16, 64});
///     pt::array y = pt::scaled_dot_product_attention(q, k, k, 4, {.causal = true}); // q's shape
[[nodiscard]] array scaled_dot_product_attention(const array& q, const array& k, const array& v,
                                                 std::size_t heads,
                                                 const attention_options& options = {});

} // namespace paramtree
