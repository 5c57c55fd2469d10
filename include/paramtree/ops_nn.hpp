// paramtree — the differentiable operations neural networks are built from: indexing and
// selection (embeddings, masks), matrix products (linear layers, with a fused GELU), the
// softmax family and cross-entropy, normalisation and dropout. Fused kernels forward and
// backward; each has a differentiable backward too, so gradients of gradients work. Errors and
// broadcasting follow <paramtree/ops.hpp>, which includes this header.
#pragma once

#include <vector>

#include <paramtree/array.hpp>
#include <paramtree/random.hpp>

namespace paramtree {

// ---- indexing and selection ---------------------------------------------------------------

/// Arrays of one dtype joined along `axis`; all other extents must agree.
[[nodiscard]] array concatenate(const std::vector<array>& xs, int axis = 0);
/// Rows of `table` picked by the integer (int32/int64) `indices`: the result has shape
/// `indices.shape() + table.shape()[1:]` — an embedding lookup. Throws shape_error for an
/// index outside [0, rows).
///
///     const auto table = pt::array::ones({10, 4});
///     const auto tokens = pt::array::from_vector<std::int64_t>({2, 3}, {1, 2, 3, 4, 5, 6});
///     pt::array e = pt::take(table, tokens);      // f32[V,D], i64[B,T] -> f32[B,T,D]
[[nodiscard]] array take(const array& table, const array& indices);
/// `a` where `mask` (bool) holds, else `b`; all three broadcast. Causal attention masks:
///
///     const auto scores = pt::array::ones({3, 3});
///     const auto causal = pt::array::from_vector<bool>({3, 3}, {1, 0, 0, 1, 1, 0, 1, 1, 1});
///     pt::array s = pt::where(causal, scores, pt::array::full({}, -1e9));
[[nodiscard]] array where(const array& mask, const array& a, const array& b);

// ---- linear algebra ------------------------------------------------------------------------

/// Matrix product (numpy's matmul): [..., m, k] @ [..., k, n] -> [..., m, n] with broadcast
/// batch axes; a 1-d operand is a vector (its axis is removed from the result). Floats, both
/// of one dtype, through the system BLAS.
///
///     const auto x = pt::array::ones({64, 784}), w = pt::array::ones({512, 784});
///     pt::array h = pt::matmul(x, pt::transpose(w));   // f32[64,784] x f32[784,512]
[[nodiscard]] array matmul(const array& a, const array& b);

/// x @ w^T + b for a weight `w` of shape [out, in] (PyTorch's and Equinox's layout) and a
/// bias of shape [out]: `torch.nn.functional.linear`. One BLAS call with a transpose flag and
/// the bias folded in; no copy of `w` is made, forward or backward.
///
///     const pt::tree layer = pt::nn::linear(k1, 3, 5);
///     pt::array h = pt::linear(x, layer["weight"].as_array(), layer["bias"].as_array());
[[nodiscard]] array linear(const array& x, const array& w, const array& b);
/// x @ w^T without a bias.
[[nodiscard]] array linear(const array& x, const array& w);
/// gelu(x @ w^T + b) as one operation: the bias and the activation in one pass over the
/// product, and a backward pass that computes the activation's derivative and the bias
/// gradient together (one pass and one activation-sized array less than `gelu(linear(...))`,
/// same values). `nn` MLPs and Transformer blocks use it for a Linear followed by GELU.
///
///     const pt::tree layer = pt::nn::linear(k1, 3, 5);
///     pt::array h = pt::linear_gelu(x, layer["weight"].as_array(), layer["bias"].as_array(),
///                                   /*approximate=*/true);  // GELU's tanh form
[[nodiscard]] array linear_gelu(const array& x, const array& w, const array& b,
                                bool approximate = false);

// ---- neural-network building blocks --------------------------------------------------------

/// exp(x - max) / sum(exp(x - max)) along `axis` (numerically stable).
[[nodiscard]] array softmax(const array& x, int axis = -1);
/// x - logsumexp(x) along `axis` (numerically stable).
[[nodiscard]] array log_softmax(const array& x, int axis = -1);
/// Mean cross-entropy of `logits` [..., C] against integer class `targets` [...].
/// Throws shape_error for a target outside [0, C).
///
///     const auto logits = pt::array::zeros({4, 10});
///     const auto labels = pt::array::from_vector<std::int64_t>({4}, {0, 3, 9, 3});
///     pt::array loss = pt::cross_entropy(logits, labels);   // f32[B,C], i64[B] -> f32[]
[[nodiscard]] array cross_entropy(const array& logits, const array& targets);
/// Normalises over the last axis: (x - mean) / sqrt(var + eps) * gamma + beta, with gamma
/// and beta of shape [D] (D = the last extent). The variance is the biased one (PyTorch).
[[nodiscard]] array layer_norm(const array& x, const array& gamma, const array& beta,
                               double eps = 1e-5);
/// The same without the affine part.
[[nodiscard]] array layer_norm(const array& x, double eps = 1e-5);
/// Root-mean-square normalisation over the last axis: x / sqrt(mean(x^2) + eps) * gamma, with
/// `gamma` of shape [D] (`torch.nn.functional.rms_norm`, T5's and LLaMA's norm). One fused
/// pass forward and one backward.
///
///     const auto x = pt::array::ones({2, 8});
///     pt::array y = pt::rms_norm(x, pt::array::full({8}, 2.0));   // all 2 (up to eps)
[[nodiscard]] array rms_norm(const array& x, const array& gamma, double eps = 1e-6);
/// What batch_norm gives back: the normalised output, and the statistics it normalised with
/// (untraced: a running average built from them is not differentiated).
struct batch_norm_output {
    array y;
    array mean;     ///< per channel: the batch's mean when training, else the running mean
    array variance; ///< per channel: the batch's unbiased variance when training, else the running
};

/// Batch normalisation over axis 1 (the channels of [N, C] or [N, C, ...] inputs, PyTorch's
/// `batch_norm`): (x - mean) / sqrt(var + eps) * gamma + beta per channel. When `training`, the
/// batch's own statistics (biased variance) normalise and gradients flow through them; else
/// `running_mean` and `running_var` do. gamma, beta and the running statistics are [C].
///
///     const auto x = pt::random::normal(k1, {8, 3, 4, 4});
///     const auto ones = pt::array::ones({3}), zeros = pt::array::zeros({3});
///     const pt::batch_norm_output bn = pt::batch_norm(x, ones, zeros, zeros, ones, true);
///     assert(std::abs(pt::mean(bn.y).item()) < 1e-5);   // normalised per channel
[[nodiscard]] batch_norm_output batch_norm(const array& x, const array& gamma, const array& beta,
                                           const array& running_mean, const array& running_var,
                                           bool training, double eps = 1e-5);
/// Zeroes each element with probability `rate` (from `key`) and scales the rest by
/// 1/(1-rate), so the expectation is unchanged. `rate` = 0 returns `x`. Throws shape_error
/// unless 0 <= rate < 1.
[[nodiscard]] array dropout(const random::key& key, const array& x, double rate);

} // namespace paramtree
