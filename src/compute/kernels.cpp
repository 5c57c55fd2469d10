// paramtree — untraced kernels: broadcasting, arithmetic, reductions (see kernels.hpp).
#include "compute/kernels.hpp"

#include <paramtree/backend.hpp>
#include <paramtree/error.hpp>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <string_view>
#include <limits>
#include <numeric>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstring>

namespace paramtree::kernels {

isa_level cpu_isa() noexcept {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("bmi2"))
        return isa_level::avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("bmi2"))
        return isa_level::avx2;
    return isa_level::sse2;
}

int max_threads() noexcept {
#ifdef _OPENMP
    // Decided once, after the backend has applied PARAMTREE_NUM_THREADS (an invalid value is
    // reported by the first matrix product; the loops then use OpenMP's default).
    static const int n = [] {
        try {
            (void)backend_info();
        } catch (const error&) {
        }
        return omp_get_max_threads();
    }();
    return n;
#else
    return 1;
#endif
}

const char* isa_name(isa_level l) noexcept {
    static constexpr std::array<const char*, 3> names{"sse2", "avx2", "avx512"};
    const auto i = static_cast<std::size_t>(l);
    return i < names.size() ? names[i] : "sse2";
}

isa_level active_isa() {
    static const isa_level level = [] {
        const isa_level cpu = cpu_isa();
        const char* forced = std::getenv("PARAMTREE_ISA");
        if (forced == nullptr || *forced == '\0') return cpu;
        const std::string_view f = forced;
        for (const auto l : {isa_level::sse2, isa_level::avx2, isa_level::avx512}) {
            if (f != isa_name(l)) continue;
            if (l > cpu)
                throw value_error(
                    "PARAMTREE_ISA", "",
                    fmt::format("a level this CPU supports (up to {})", isa_name(cpu)),
                    std::string(f));
            return l;
        }
        throw value_error("PARAMTREE_ISA", "", "sse2, avx2 or avx512", fmt::format("'{}'", f));
    }();
    return level;
}

std::string describe_all(std::initializer_list<const array*> xs) {
    std::string out;
    for (const array* x : xs) {
        if (!out.empty()) out += " and ";
        out += x->describe();
    }
    return out;
}

void check_same_dtype(std::string_view op, std::initializer_list<const array*> xs) {
    for (const array* x : xs)
        if (x->dtype() != (*xs.begin())->dtype())
            detail::throw_shape(std::string(op), "operands of one dtype", describe_all(xs));
}

shape_type broadcast_shapes(std::string_view op, std::initializer_list<const array*> xs) {
    std::size_t rank = 0;
    for (const array* x : xs)
        rank = std::max(rank, x->ndim());
    shape_type out(rank, 1);
    for (const array* x : xs) {
        const auto& s = x->shape();
        for (std::size_t i = 0; i < s.size(); ++i) {
            auto& o = out[rank - s.size() + i];
            if (s[i] == o || s[i] == 1) continue;
            if (o != 1)
                detail::throw_shape(std::string(op), "shapes that broadcast together",
                                    describe_all(xs));
            o = s[i];
        }
    }
    return out;
}

broadcast_plan plan_broadcast(const shape_type& out_shape,
                              std::initializer_list<const shape_type*> in_shapes) {
    const std::size_t rank = out_shape.size();
    const std::size_t k = in_shapes.size();
    // Per-operand strides in the output's index space (0 on broadcast axes).
    std::array<std::vector<std::size_t>, 3> full;
    std::size_t op = 0;
    for (const shape_type* s : in_shapes) {
        auto& st = full[op++];
        st.assign(rank, 0);
        std::size_t stride = 1;
        for (std::size_t i = s->size(); i-- > 0;) {
            const std::size_t d = rank - s->size() + i;
            st[d] = (*s)[i] == 1 ? 0 : stride;
            stride *= (*s)[i];
        }
    }
    // Merge axis d into the row below it whenever every operand steps through both as one.
    broadcast_plan p;
    p.operands = k;
    for (std::size_t d = 0; d < rank; ++d) {
        if (out_shape[d] == 1) continue;
        bool merge = !p.shape.empty();
        for (std::size_t o = 0; o < k && merge; ++o)
            merge = p.strides[o].back() == full[o][d] * out_shape[d];
        if (merge) {
            p.shape.back() *= out_shape[d];
            for (std::size_t o = 0; o < k; ++o)
                p.strides[o].back() = full[o][d];
        } else {
            p.shape.push_back(out_shape[d]);
            for (std::size_t o = 0; o < k; ++o)
                p.strides[o].push_back(full[o][d]);
        }
    }
    return p;
}

namespace {
template <class F>
array arith(std::string_view op, const array& a, const array& b, F f) {
    check_same_dtype(op, {&a, &b});
    const auto shape = broadcast_shapes(op, {&a, &b});
    return numeric_dispatch(op, a, [&](auto tag) {
        using T = decltype(tag);
        return binary<T>(a, b, shape, [&](T x, T y) { return static_cast<T>(f(x, y)); });
    });
}
} // namespace

array add(const array& a, const array& b) {
    return arith("add", a, b, [](auto x, auto y) { return x + y; });
}
array sub(const array& a, const array& b) {
    return arith("subtract", a, b, [](auto x, auto y) { return x - y; });
}
array mul(const array& a, const array& b) {
    return arith("multiply", a, b, [](auto x, auto y) { return x * y; });
}
array div(const array& a, const array& b) {
    check_same_dtype("divide", {&a, &b});
    const auto shape = broadcast_shapes("divide", {&a, &b});
    return float_dispatch("divide", a, [&](auto tag) {
        using T = decltype(tag);
        return binary<T>(a, b, shape, [](T x, T y) { return x / y; });
    });
}
array neg(const array& a) {
    return numeric_dispatch("negative", a, [&](auto tag) {
        using T = decltype(tag);
        return unary<T>(a, [](T x) { return static_cast<T>(-x); });
    });
}
array scale(const array& a, double s) {
    return numeric_dispatch("multiply", a, [&](auto tag) {
        using T = decltype(tag);
        const T f = static_cast<T>(s);
        return unary<T>(a, [f](T x) { return static_cast<T>(x * f); });
    });
}

array offset(const array& a, double s) {
    return numeric_dispatch("add", a, [&](auto tag) {
        using T = decltype(tag);
        const T c = static_cast<T>(s);
        return unary<T>(a, [c](T x) { return static_cast<T>(x + c); });
    });
}

std::vector<std::size_t> normalize_axes(std::string_view op, const array& x,
                                        const std::vector<int>& axes) {
    const auto rank = static_cast<int>(x.ndim());
    std::vector<std::size_t> out;
    if (axes.empty()) {
        out.resize(x.ndim());
        std::iota(out.begin(), out.end(), std::size_t{0});
        return out;
    }
    for (const int a : axes) {
        const int n = a < 0 ? a + rank : a;
        if (n < 0 || n >= rank)
            detail::throw_shape(std::string(op), fmt::format("axes in [{}, {})", -rank, rank),
                                fmt::format("axis {} for {}", a, x.describe()));
        out.push_back(static_cast<std::size_t>(n));
    }
    std::sort(out.begin(), out.end());
    if (std::adjacent_find(out.begin(), out.end()) != out.end())
        detail::throw_shape(std::string(op), "distinct axes",
                            fmt::format("({}) for {}", fmt::join(axes, ","), x.describe()));
    return out;
}

shape_type reduced_shape(const shape_type& in, const std::vector<std::size_t>& axes,
                         bool keepdims) {
    shape_type out;
    for (std::size_t d = 0; d < in.size(); ++d) {
        const bool reduced = std::binary_search(axes.begin(), axes.end(), d);
        if (!reduced)
            out.push_back(in[d]);
        else if (keepdims)
            out.push_back(1);
    }
    return out;
}

namespace {
/// Brings the reduced axes into one contiguous block (permuting a copy if they are not) and
/// calls `f(data, outer, r, inner)` with `x` seen as [outer, r, inner].
template <class T, class F>
void as_outer_r_inner(const array& x, const std::vector<std::size_t>& axes, F f) {
    const auto& s = x.shape();
    const bool contiguous = axes.empty() || axes.back() - axes.front() + 1 == axes.size();
    array src = x;
    std::size_t first = axes.empty() ? 0 : axes.front();
    std::size_t last = axes.empty() ? 0 : axes.back() + 1;
    if (!contiguous) {
        std::vector<std::size_t> perm;
        for (std::size_t d = 0; d < s.size(); ++d)
            if (!std::binary_search(axes.begin(), axes.end(), d)) perm.push_back(d);
        perm.insert(perm.end(), axes.begin(), axes.end());
        src = permute(x, perm);
        first = s.size() - axes.size();
        last = s.size();
    }
    const auto& ps = src.shape();
    std::size_t outer = 1, r = 1, inner = 1;
    for (std::size_t d = 0; d < ps.size(); ++d)
        (d < first ? outer : d < last ? r : inner) *= ps[d];
    f(detail::data<T>(src), outer, r, inner);
}
} // namespace

array sum(const array& x, const std::vector<std::size_t>& axes) {
    const auto out_shape = reduced_shape(x.shape(), axes, true);
    return numeric_dispatch("sum", x, [&](auto tag) {
        using T = decltype(tag);
        auto result_data = detail::fresh<T>(out_shape);
        array result = std::move(result_data.value);
        auto* out = result_data.data;
        as_outer_r_inner<T>(x, axes,
                            [&](const T* in, std::size_t outer, std::size_t r, std::size_t inner) {
                                for (std::size_t o = 0; o < outer; ++o) {
                                    T* dst = out + o * inner;
                                    if (inner == 1) {
                                        // A float row sum: in double (one rounding at the end for
                                        // float32), in independent partial sums so the additions
                                        // pipeline. Integers: exact.
                                        if constexpr (std::is_floating_point_v<T>) {
                                            dst[0] = static_cast<T>(strided_sum(in + o * r, r, 1));
                                        } else {
                                            T acc = 0;
                                            for (std::size_t k = 0; k < r; ++k)
                                                acc = static_cast<T>(acc + in[o * r + k]);
                                            dst[0] = acc;
                                        }
                                        continue;
                                    }
                                    std::fill_n(dst, inner, T{0});
                                    for (std::size_t k = 0; k < r; ++k) {
                                        const T* row = in + (o * r + k) * inner;
                                        for (std::size_t i = 0; i < inner; ++i)
                                            dst[i] += row[i];
                                    }
                                }
                            });
        return result;
    });
}

array max(const array& x, const std::vector<std::size_t>& axes) {
    const auto out_shape = reduced_shape(x.shape(), axes, true);
    for (const auto a : axes)
        if (x.shape()[a] == 0)
            detail::throw_shape("max", "a non-empty axis to reduce",
                                fmt::format("axis {} of {}", a, x.describe()));
    return numeric_dispatch("max", x, [&](auto tag) {
        using T = decltype(tag);
        auto result_data = detail::fresh<T>(out_shape);
        array result = std::move(result_data.value);
        auto* out = result_data.data;
        as_outer_r_inner<T>(
            x, axes, [&](const T* in, std::size_t outer, std::size_t r, std::size_t inner) {
                for (std::size_t o = 0; o < outer; ++o) {
                    T* dst = out + o * inner;
                    std::copy_n(in + o * r * inner, inner, dst);
                    for (std::size_t k = 1; k < r; ++k) {
                        const T* row = in + (o * r + k) * inner;
                        for (std::size_t i = 0; i < inner; ++i)
                            dst[i] = row[i] > dst[i] || std::isnan(static_cast<double>(row[i]))
                                         ? row[i]
                                         : dst[i];
                    }
                }
            });
        return result;
    });
}

array view(const array& x, shape_type shape) {
    const std::size_t n = detail::checked_size(shape);
    if (n != x.size())
        detail::throw_shape("reshape", fmt::format("a shape with {} elements", x.size()),
                            fmt::format("[{}] ({} elements)", fmt::join(shape, ","), n));
    return detail::array_access::view(x, std::move(shape));
}

namespace {
/// True for (0, 1, ..., n-3, n-1, n-2): a batch of matrix transposes.
bool swaps_last_two(const std::vector<std::size_t>& axes) {
    const std::size_t n = axes.size();
    if (n < 2 || axes[n - 1] != n - 2 || axes[n - 2] != n - 1) return false;
    for (std::size_t i = 0; i + 2 < n; ++i)
        if (axes[i] != i) return false;
    return true;
}

/// A batch of [r, c] -> [c, r] transposes in 32x32 tiles, so that both the reads and the
/// writes stay within a few cache lines (a column walk would miss on every element).
array transpose_last_two(const array& a, const shape_type& out_shape) {
    const std::size_t n = a.ndim();
    const std::size_t r = a.shape()[n - 2], c = a.shape()[n - 1];
    const std::size_t batch = r * c == 0 ? 0 : a.size() / (r * c);
    return detail::dispatch(a.dtype(), [&](auto tag) {
        using T = decltype(tag);
        auto result_data = detail::fresh<T>(out_shape);
        array result = std::move(result_data.value);
        auto* out = result_data.data;
        const auto* in = detail::data<T>(a);
        constexpr std::size_t tile = 32;
        for (std::size_t b = 0; b < batch; ++b) {
            const T* src = in + b * r * c;
            T* dst = out + b * r * c;
            for (std::size_t i0 = 0; i0 < r; i0 += tile)
                for (std::size_t j0 = 0; j0 < c; j0 += tile) {
                    const std::size_t i1 = std::min(r, i0 + tile), j1 = std::min(c, j0 + tile);
                    for (std::size_t j = j0; j < j1; ++j)
                        for (std::size_t i = i0; i < i1; ++i)
                            dst[j * r + i] = src[i * c + j];
                }
        }
        return result;
    });
}
} // namespace

array permute(const array& a, const std::vector<std::size_t>& axes) {
    const std::size_t rank = a.ndim();
    shape_type out_shape(rank);
    for (std::size_t i = 0; i < rank; ++i)
        out_shape[i] = a.shape()[axes[i]];
    if (std::is_sorted(axes.begin(), axes.end())) return view(a, out_shape);
    if (swaps_last_two(axes)) return transpose_last_two(a, out_shape);
    // Strides of the input, read in the output's axis order.
    std::vector<std::size_t> in_strides(rank, 1);
    for (std::size_t i = rank; i-- > 1;)
        in_strides[i - 1] = in_strides[i] * a.shape()[i];
    std::vector<std::size_t> strides(rank);
    for (std::size_t i = 0; i < rank; ++i)
        strides[i] = in_strides[axes[i]];
    const std::size_t n = a.size();
    return detail::dispatch(a.dtype(), [&](auto tag) {
        using T = decltype(tag);
        auto result_data = detail::fresh<T>(out_shape);
        array result = std::move(result_data.value);
        auto* out = result_data.data;
        const auto* src = detail::data<T>(a);
        // The innermost output axis walks the input with a fixed stride: copy it as a row.
        const std::size_t inner = rank == 0 ? 1 : out_shape[rank - 1];
        const std::size_t step = rank == 0 ? 0 : strides[rank - 1];
        if (n == 0) return result;
        std::vector<std::size_t> idx(rank, 0);
        std::size_t offset = 0;
        for (std::size_t k = 0; k < n; k += inner) {
            for (std::size_t i = 0; i < inner; ++i)
                out[k + i] = src[offset + i * step];
            for (std::size_t d = rank - 1; d-- > 0;) {
                offset += strides[d];
                if (++idx[d] < out_shape[d]) break;
                offset -= strides[d] * out_shape[d];
                idx[d] = 0;
            }
        }
        return result;
    });
}

array select(const array& mask, const array& a, const array& b, const shape_type& shape) {
    const auto plan = plan_broadcast(shape, {&mask.shape(), &a.shape(), &b.shape()});
    return detail::dispatch(a.dtype(), [&](auto tag) {
        using T = decltype(tag);
        auto result_data = detail::fresh<T>(shape);
        array result = std::move(result_data.value);
        auto* out = result_data.data;
        const auto* m = reinterpret_cast<const std::uint8_t*>(mask.bytes());
        const auto* x = detail::data<T>(a);
        const auto* y = detail::data<T>(b);
        for_each_row(plan, [&](std::size_t o, const auto& off, std::size_t n, const auto& inc) {
            for (std::size_t i = 0; i < n; ++i)
                out[o + i] =
                    m[off[0] + i * inc[0]] ? x[off[1] + i * inc[1]] : y[off[2] + i * inc[2]];
        });
        return result;
    });
}

array broadcast_to(const array& x, const shape_type& shape) {
    if (x.shape() == shape) return x;
    bool ok = x.ndim() <= shape.size();
    for (std::size_t i = 0; ok && i < x.ndim(); ++i) {
        const auto e = x.shape()[x.ndim() - 1 - i];
        ok = e == 1 || e == shape[shape.size() - 1 - i];
    }
    if (!ok) detail::throw_shape("broadcast_to", describe(x.dtype(), shape), x.describe());
    const auto plan = plan_broadcast(shape, {&x.shape()});
    return detail::dispatch(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        auto result_data = detail::fresh<T>(shape);
        array result = std::move(result_data.value);
        auto* out = result_data.data;
        const auto* in = detail::data<T>(x);
        for_each_row(plan, [&](std::size_t o, const auto& off, std::size_t n, const auto& inc) {
            if (inc[0] == 0)
                std::fill_n(out + o, n, in[off[0]]);
            else
                for (std::size_t i = 0; i < n; ++i)
                    out[o + i] = in[off[0] + i * inc[0]];
        });
        return result;
    });
}

array sum_to(const array& g, const shape_type& shape) {
    if (g.shape() == shape) return g;
    const std::size_t lead = g.ndim() - shape.size();
    std::vector<std::size_t> axes;
    for (std::size_t d = 0; d < g.ndim(); ++d)
        if (d < lead || (shape[d - lead] == 1 && g.shape()[d] != 1)) axes.push_back(d);
    return view(sum(g, axes), shape);
}

} // namespace paramtree::kernels
