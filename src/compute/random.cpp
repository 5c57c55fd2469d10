// paramtree — threefry-2x32 and the samplers built on it.
#include <paramtree/detail/errors.hpp>
#include <paramtree/random.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <numeric>

#include <fmt/format.h>

namespace paramtree::random {

namespace {
constexpr std::uint32_t rotl(std::uint32_t x, unsigned r) noexcept {
    return (x << r) | (x >> (32U - r));
}

// Streams of counters are kept apart by the second counter word, so split, fold_in and the
// samplers never reuse a block of one another.
constexpr std::uint32_t split_domain = 0x73706c74; // "splt"
constexpr std::uint32_t fold_domain = 0x666f6c64;  // "fold"
constexpr std::uint32_t bits_domain = 0x62697473;  // "bits"
} // namespace

std::array<std::uint32_t, 2> threefry2x32(std::array<std::uint32_t, 2> key,
                                          std::array<std::uint32_t, 2> counter) noexcept {
    constexpr unsigned rotations[8] = {13, 15, 26, 6, 17, 29, 16, 24};
    const std::uint32_t ks[3] = {key[0], key[1], 0x1BD11BDAU ^ key[0] ^ key[1]};
    std::uint32_t x0 = counter[0] + ks[0];
    std::uint32_t x1 = counter[1] + ks[1];
    for (unsigned round = 0; round < 20; ++round) {
        x0 += x1;
        x1 = rotl(x1, rotations[round % 8]);
        x1 ^= x0;
        if (round % 4 == 3) { // key injection every four rounds
            const unsigned s = round / 4 + 1;
            x0 += ks[s % 3];
            x1 += ks[(s + 1) % 3] + s;
        }
    }
    return {x0, x1};
}

std::string key::to_string() const {
    return fmt::format("key({:#010x}, {:#010x})", words[0], words[1]);
}

key make_key(std::uint64_t seed) noexcept {
    return key{{static_cast<std::uint32_t>(seed >> 32), static_cast<std::uint32_t>(seed)}};
}

std::vector<key> split(const key& k, std::size_t n) {
    std::vector<key> out;
    out.reserve(n);
    for (std::size_t i = 0; i < n; ++i)
        out.push_back(key{threefry2x32(k.words, {static_cast<std::uint32_t>(i), split_domain})});
    return out;
}

key fold_in(const key& k, std::uint32_t data) noexcept {
    return key{threefry2x32(k.words, {data, fold_domain})};
}

std::vector<std::uint32_t> bits(const key& k, std::size_t n) {
    std::vector<std::uint32_t> out(n);
    for (std::size_t i = 0; i < n; i += 2) {
        const auto block = threefry2x32(k.words, {static_cast<std::uint32_t>(i / 2), bits_domain});
        out[i] = block[0];
        if (i + 1 < n) out[i + 1] = block[1];
    }
    return out;
}

namespace {

std::size_t count(const shape_type& shape) {
    return std::accumulate(shape.begin(), shape.end(), std::size_t{1}, std::multiplies<>());
}

void check_float(dtype d, const char* who) {
    if (!is_inexact(d))
        detail::throw_shape(who, "dtype float32 or float64", std::string(dtype_name(d)));
}

// Uniform samples in [0, 1): 24 random bits for float32 (exactly representable), 53 for
// float64, so every value is a multiple of 2^-24 or 2^-53 and the result is bit-identical
// everywhere.
std::vector<double> unit_uniform(const key& k, std::size_t n, dtype d) {
    std::vector<double> out(n);
    if (d == dtype::float32) {
        const auto w = bits(k, n);
        for (std::size_t i = 0; i < n; ++i)
            out[i] = static_cast<double>(w[i] >> 8) * 0x1.0p-24;
    } else {
        const auto w = bits(k, 2 * n);
        for (std::size_t i = 0; i < n; ++i) {
            const std::uint64_t v = (static_cast<std::uint64_t>(w[2 * i]) << 32) | w[2 * i + 1];
            out[i] = static_cast<double>(v >> 11) * 0x1.0p-53;
        }
    }
    return out;
}

array from_doubles(shape_type shape, const std::vector<double>& v, dtype d) {
    if (d == dtype::float32)
        return array::build<float>(std::move(shape), [&](std::span<float> out) {
            for (std::size_t i = 0; i < out.size(); ++i)
                out[i] = static_cast<float>(v[i]);
        });
    return array::build<double>(std::move(shape), [&](std::span<double> out) {
        for (std::size_t i = 0; i < out.size(); ++i)
            out[i] = v[i];
    });
}

// Standard normal CDF and its inverse.
double phi(double x) {
    return 0.5 * std::erfc(-x / std::numbers::sqrt2);
}
double phi_inv(double p) {
    return std::numbers::sqrt2 * erfinv(2 * p - 1);
}

} // namespace

double erfinv(double x) noexcept {
    if (std::isnan(x) || x < -1 || x > 1) return std::numeric_limits<double>::quiet_NaN();
    if (x == 1) return std::numeric_limits<double>::infinity();
    if (x == -1) return -std::numeric_limits<double>::infinity();
    // Giles' single-precision approximation, then Newton steps on erf(y) = x.
    const double w = -std::log((1.0 - x) * (1.0 + x));
    double y;
    if (w < 5.0) {
        const double t = w - 2.5;
        double p = 2.81022636e-08;
        for (const double c : {3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
                               -0.00125372503, -0.00417768164, 0.246640727, 1.50140941})
            p = c + p * t;
        y = p * x;
    } else {
        const double t = std::sqrt(w) - 3.0;
        double p = -0.000200214257;
        for (const double c : {0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
                               -0.0076224613, 0.00943887047, 1.00167406, 2.83297682})
            p = c + p * t;
        y = p * x;
    }
    for (int i = 0; i < 3; ++i) {
        const double err = std::erf(y) - x;
        y -= err / (2.0 / std::sqrt(std::numbers::pi) * std::exp(-y * y));
    }
    return y;
}

array uniform(const key& k, shape_type shape, double lo, double hi, dtype d) {
    check_float(d, "random::uniform");
    if (!(lo < hi))
        detail::throw_shape("random::uniform", "lo < hi", fmt::format("[{}, {})", lo, hi));
    auto u = unit_uniform(k, count(shape), d);
    for (auto& x : u)
        x = lo + (hi - lo) * x;
    if (d == dtype::float32) // rounding to float may reach hi: keep the interval half-open
        for (auto& x : u)
            if (static_cast<float>(x) >= static_cast<float>(hi))
                x = std::nextafter(static_cast<float>(hi), -INFINITY);
    return from_doubles(std::move(shape), u, d);
}

array normal(const key& k, shape_type shape, dtype d) {
    check_float(d, "random::normal");
    auto u = unit_uniform(k, count(shape), d);
    const double tiny = d == dtype::float32 ? 0x1.0p-25 : 0x1.0p-54;
    for (auto& x : u)
        x = phi_inv(std::clamp(x, tiny, 1.0 - tiny)); // open interval: finite samples
    return from_doubles(std::move(shape), u, d);
}

array truncated_normal(const key& k, shape_type shape, double lower, double upper, dtype d) {
    check_float(d, "random::truncated_normal");
    if (!(lower < upper))
        detail::throw_shape("random::truncated_normal", "lower < upper",
                            fmt::format("[{}, {}]", lower, upper));
    const double a = phi(lower), b = phi(upper);
    auto u = unit_uniform(k, count(shape), d);
    for (auto& x : u)
        x = std::clamp(phi_inv(a + (b - a) * x), lower, upper);
    return from_doubles(std::move(shape), u, d);
}

array bernoulli(const key& k, shape_type shape, double p) {
    if (!(p >= 0 && p <= 1))
        detail::throw_shape("random::bernoulli", "0 <= p <= 1", fmt::format("{}", p));
    const auto u = unit_uniform(k, count(shape), dtype::float64);
    return array::build<bool>(std::move(shape), [&](std::span<bool> out) {
        for (std::size_t i = 0; i < out.size(); ++i)
            out[i] = u[i] < p;
    });
}

array permutation(const key& k, std::size_t n) {
    const auto w = bits(k, 2 * n);
    return array::build<std::int64_t>({n}, [&](std::span<std::int64_t> out) {
        std::iota(out.begin(), out.end(), std::int64_t{0});
        // Fisher-Yates with 64-bit draws: the modulo bias is below n / 2^64.
        for (std::size_t i = n; i-- > 1;) {
            const std::uint64_t r = (static_cast<std::uint64_t>(w[2 * i]) << 32) | w[2 * i + 1];
            std::swap(out[i], out[r % (i + 1)]);
        }
    });
}

} // namespace paramtree::random
