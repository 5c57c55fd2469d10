// paramtree — the basic modules: Linear, Embedding, LayerNorm, RMSNorm, Dropout, Activation, MLP,
// Sequential. Each constructor takes an explicit random key and initialises as PyTorch does;
// each module is applied with `nn::apply` (<paramtree/nn/module.hpp>).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <paramtree/nn/module.hpp>
#include <paramtree/random.hpp>
#include <paramtree/tree.hpp>

namespace paramtree::nn {

/// `Linear(weight=[out, in], bias=[out], in_features, out_features)`: y = x Wᵀ + b over the
/// last axis of x. Weight and bias are uniform in ±1/sqrt(in) (PyTorch's default).
///
///     pt::tree l = pt::nn::linear(key, 64, 32);           // l["weight"]: f32[32,64]
[[nodiscard]] tree linear(const random::key& key, std::size_t in, std::size_t out, bool bias = true,
                          dtype d = dtype::float32);

/// `Embedding(weight=[num, dim])`: rows of the weight picked by integer indices; weight
/// ~ N(0, 1) (PyTorch's default). Applied to an int32/int64 array of any shape.
[[nodiscard]] tree embedding(const random::key& key, std::size_t num, std::size_t dim,
                             dtype d = dtype::float32);

/// `LayerNorm(weight=ones[dim], bias=zeros[dim], dim, eps)` over the last axis.
[[nodiscard]] tree layer_norm(std::size_t dim, double eps = 1e-5, dtype d = dtype::float32);

/// `RMSNorm(weight=ones[dim], dim, eps)` over the last axis (`pt::rms_norm`).
[[nodiscard]] tree rms_norm(std::size_t dim, double eps = 1e-6, dtype d = dtype::float32);

/// `BatchNorm(weight=ones[C], bias=zeros[C], state=State(running_mean=zeros[C],
/// running_var=ones[C], num_batches_tracked=0), channels, eps, momentum)` over axis 1 of
/// [N, C, ...] inputs (PyTorch's BatchNorm1d/2d). Training normalises with the batch's
/// statistics, inference with the running ones; `nn::apply_with_state` returns the running
/// statistics updated (new = (1 - momentum) * old + momentum * batch, unbiased variance).
[[nodiscard]] tree batch_norm(std::size_t channels, double eps = 1e-5, double momentum = 0.1,
                              dtype d = dtype::float32);

/// `Dropout(rate)`: no parameters; active only when `context::training`.
[[nodiscard]] tree dropout(double rate);

/// `Activation(fn)`: `relu`, `gelu`, `gelu_tanh`, `tanh`, `sigmoid` or `identity`, as a
/// module (for Sequential). Throws leaf_error for another name.
[[nodiscard]] tree activation(std::string fn);

/// `MLP(layers=[Linear...], in, out, width, depth, activation)` (Equinox's eqx.nn.MLP):
/// `depth` hidden layers of `width`, the activation between layers (not after the last).
[[nodiscard]] tree mlp(const random::key& key, std::size_t in, std::size_t out, std::size_t width,
                       std::size_t depth, std::string activation = "relu",
                       dtype d = dtype::float32);

/// `Sequential(layers=[...])`: built-in modules applied in order.
///
///     auto net = pt::nn::sequential({pt::nn::linear(k1, 4, 8), pt::nn::activation("gelu"),
///                                    pt::nn::linear(k2, 8, 1)});
[[nodiscard]] tree sequential(std::vector<tree> layers);

} // namespace paramtree::nn
