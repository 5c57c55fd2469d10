// paramtree — convolutional modules: Conv2d, Conv1d, MaxPool2d, AvgPool2d, Flatten. Each
// constructor initialises as PyTorch does; each is applied with `nn::apply`
// (<paramtree/nn/module.hpp>) to NCHW images (NCL sequences for Conv1d).
#pragma once

#include <cstddef>

#include <paramtree/conv.hpp>
#include <paramtree/nn/module.hpp>
#include <paramtree/pool.hpp>
#include <paramtree/random.hpp>
#include <paramtree/tree.hpp>

namespace paramtree::nn {

/// `Conv2d(weight=[out, in / groups, kh, kw], bias=[out], ...)` with the geometry as static
/// fields. Weight and bias uniform in ±1/sqrt(fan_in), fan_in = in / groups * kh * kw
/// (PyTorch's default).
///
///     pt::tree c = pt::nn::conv2d(key, 1, 6, {5, 5}, {.padding = {2, 2}});
///     pt::array y = pt::nn::apply(c, pt::array::ones({8, 1, 28, 28}));   // [8, 6, 28, 28]
[[nodiscard]] tree conv2d(const random::key& key, std::size_t in, std::size_t out,
                          std::array<std::size_t, 2> kernel, const conv2d_options& options = {},
                          bool bias = true, dtype d = dtype::float32);

/// `Conv1d(weight=[out, in / groups, k], bias=[out], ...)`, initialised like Conv2d.
[[nodiscard]] tree conv1d(const random::key& key, std::size_t in, std::size_t out,
                          std::size_t kernel, const conv1d_options& options = {}, bool bias = true,
                          dtype d = dtype::float32);

/// `MaxPool2d` and `AvgPool2d`: no parameters, the window as static fields.
///
///     auto net = pt::nn::sequential({pt::nn::conv2d(k1, 1, 6, {5, 5}),
///                                    pt::nn::activation("relu"), pt::nn::max_pool2d({})});
[[nodiscard]] tree max_pool2d(const pool2d_options& options = {});
[[nodiscard]] tree avg_pool2d(const pool2d_options& options = {});

/// `Flatten`: [N, ...] to [N, rest] (PyTorch's nn.Flatten with start_dim 1), between
/// convolutions and Linear layers.
[[nodiscard]] tree flatten();

} // namespace paramtree::nn
