// paramtree — attention modules: multi-head causal self-attention and a pre-norm Transformer
// block. Applied with `nn::apply` to x of shape [batch, time, dim] or [time, dim].
#pragma once

#include <cstddef>

#include <paramtree/nn/module.hpp>
#include <paramtree/random.hpp>
#include <paramtree/tree.hpp>

namespace paramtree::nn {

/// `MultiHeadAttention(q, k, v, o: Linear(dim, dim), dim, heads, causal, dropout)`:
/// softmax(q kᵀ / sqrt(dim/heads) [+ causal mask]) v per head, heads merged, then `o`.
/// Throws shape_error unless `heads` divides `dim`.
///
///     pt::tree attn = pt::nn::multi_head_attention(key, 64, 4);   // causal by default
[[nodiscard]] tree multi_head_attention(const random::key& key, std::size_t dim, std::size_t heads,
                                        bool causal = true, double dropout = 0.0,
                                        dtype d = dtype::float32);

/// `TransformerBlock(norm1, attn, norm2, mlp: Sequential(Linear(dim, hidden), gelu_tanh,
/// Linear(hidden, dim)), dropout)`, pre-norm with GPT-2's tanh-approximated GELU:
/// x + drop(attn(norm1(x))), then + drop(mlp(norm2(x))). `hidden` defaults to 4 * dim.
[[nodiscard]] tree transformer_block(const random::key& key, std::size_t dim, std::size_t heads,
                                     std::size_t hidden = 0, double dropout = 0.0,
                                     dtype d = dtype::float32);

/// The [t, t] bool mask of positions a causal model may attend to (j <= i).
[[nodiscard]] array causal_mask(std::size_t t);

} // namespace paramtree::nn
