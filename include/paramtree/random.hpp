// paramtree — a splittable, counter-based random number generator with explicit keys (as in
// JAX): threefry-2x32 with 20 rounds. No hidden state: the same key gives the same numbers,
// on every machine and in every thread; `split` and `fold_in` derive independent keys.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <paramtree/array.hpp>

namespace paramtree::random {

/// The threefry-2x32 block function (20 rounds, Random123's reference): encrypts `counter`
/// under `key`. Everything else in this header is built on it.
///
///     auto out = pt::random::threefry2x32({0, 0}, {0, 0});
///     assert(out[0] == 0x6b200159 && out[1] == 0x99ba4efe);   // Random123's known answer
[[nodiscard]] std::array<std::uint32_t, 2>
threefry2x32(std::array<std::uint32_t, 2> key, std::array<std::uint32_t, 2> counter) noexcept;

/// A random key: two 32-bit words. A plain value: copy it, compare it, print it.
struct key {
    std::array<std::uint32_t, 2> words{};
    friend bool operator==(const key&, const key&) = default;
    /// `key(0x00000000, 0x0000002a)`.
    [[nodiscard]] std::string to_string() const;
};

/// The key of a seed (both halves of a 64-bit seed are used).
///
///     auto k = pt::random::make_key(42);
///     assert(k.to_string() == "key(0x00000000, 0x0000002a)");
[[nodiscard]] key make_key(std::uint64_t seed) noexcept;
/// `n` new keys, independent of each other and of `k` (use each at most once).
///
///     auto ks = pt::random::split(key, 3);   // one per layer
[[nodiscard]] std::vector<key> split(const key& k, std::size_t n = 2);
/// A key derived from `k` and `data` (e.g. a step number or a layer index).
[[nodiscard]] key fold_in(const key& k, std::uint32_t data) noexcept;

/// `n` random 32-bit words.
[[nodiscard]] std::vector<std::uint32_t> bits(const key& k, std::size_t n);
/// Uniform in [lo, hi), float32 or float64. Throws shape_error for a non-float dtype or lo >= hi.
///
///     pt::array w = pt::random::uniform(key, {64, 32}, -0.125, 0.125);
[[nodiscard]] array uniform(const key& k, shape_type shape, double lo = 0.0, double hi = 1.0,
                            dtype d = dtype::float32);
/// Standard normal (mean 0, standard deviation 1), by the inverse error function of a uniform.
[[nodiscard]] array normal(const key& k, shape_type shape, dtype d = dtype::float32);
/// Normal restricted to [lower, upper] (in standard deviations), by the inverse CDF.
/// Throws shape_error if lower >= upper.
[[nodiscard]] array truncated_normal(const key& k, shape_type shape, double lower = -2.0,
                                     double upper = 2.0, dtype d = dtype::float32);
/// True with probability `p` (bool array). Throws shape_error unless 0 <= p <= 1.
[[nodiscard]] array bernoulli(const key& k, shape_type shape, double p);
/// A random permutation of 0..n-1 (int64).
[[nodiscard]] array permutation(const key& k, std::size_t n);

/// The inverse error function, accurate to double precision (used by normal sampling).
[[nodiscard]] double erfinv(double x) noexcept;

} // namespace paramtree::random
