// paramtree — array handles: allocation, conversion, comparison.
#include <paramtree/array.hpp>
#include <paramtree/detail/array_impl.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/tape.hpp> // traced_reshape, traced_astype

#include "compute/buffer_pool.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace paramtree {

namespace {
// In the enum's order: info(d) is an index.
constexpr dtype_info dtypes[] = {
    {dtype::float32, "float32", "f32", 4, "F32", "f4"},
    {dtype::float64, "float64", "f64", 8, "F64", "f8"},
    {dtype::int32, "int32", "i32", 4, "I32", "i4"},
    {dtype::int64, "int64", "i64", 8, "I64", "i8"},
    {dtype::boolean, "bool", "bool", 1, "BOOL", "b1"},
};
constexpr bool in_enum_order() {
    for (std::size_t i = 0; i < std::size(dtypes); ++i)
        if (static_cast<std::size_t>(dtypes[i].type) != i) return false;
    return true;
}
static_assert(in_enum_order(), "dtypes[] is indexed by the enum's value");
} // namespace

const dtype_info& info(dtype d) noexcept {
    const auto i = static_cast<std::size_t>(d);
    return dtypes[i < std::size(dtypes) ? i : 0]; // every enumerator has a row (static_assert)
}

std::span<const dtype_info> dtype_table() noexcept {
    return dtypes;
}

std::string_view dtype_name(dtype d) noexcept {
    return info(d).name;
}

std::string_view dtype_short_name(dtype d) noexcept {
    return info(d).short_name;
}

std::size_t dtype_size(dtype d) noexcept {
    return info(d).size;
}

std::string describe(dtype d, const shape_type& shape) {
    return fmt::format("{}[{}]", dtype_short_name(d), fmt::join(shape, ","));
}

namespace detail {

std::size_t checked_size(const shape_type& shape) {
    std::size_t n = 1;
    for (const auto e : shape) {
        if (e != 0 && n > std::numeric_limits<std::size_t>::max() / 16 / e)
            throw_shape("array", "a shape whose byte size fits in 64 bits",
                        fmt::format("[{}]", fmt::join(shape, ",")));
        n *= e;
    }
    return n;
}

void check_ragged(std::size_t expected, std::size_t found, std::size_t row) {
    if (expected != found)
        throw_shape(fmt::format("array from nested braces, row {}", row),
                    fmt::format("{} elements", expected), fmt::format("{}", found));
}

} // namespace detail

namespace {

constexpr std::size_t buffer_alignment = 64;

/// The allocator behind `allocate`: one 64-byte-aligned block holds the shared_ptr control
/// block, the array's metadata and, after them, its elements. A fresh array thus costs one
/// allocation instead of three (buffer, its control block, the metadata): the tape's
/// per-operation cost is mostly allocation. It reports where the elements start through
/// `data`.
template <class T>
struct tail_allocator {
    using value_type = T;
    std::size_t bytes;
    std::byte** data;
    tail_allocator(std::size_t b, std::byte** d) noexcept : bytes(b), data(d) {}
    template <class U>
    tail_allocator(const tail_allocator<U>& o) noexcept : bytes(o.bytes), data(o.data) {}
    static std::size_t head(std::size_t n) noexcept {
        return (n * sizeof(T) + buffer_alignment - 1) / buffer_alignment * buffer_alignment;
    }
    T* allocate(std::size_t n) {
        auto* p = static_cast<std::byte*>(detail::allocate_buffer(head(n) + bytes));
        *data = p + head(n);
        return reinterpret_cast<T*>(p);
    }
    void deallocate(T* p, std::size_t n) noexcept { detail::deallocate_buffer(p, head(n) + bytes); }
    template <class U>
    bool operator==(const tail_allocator<U>& o) const noexcept {
        return bytes == o.bytes;
    }
};

} // namespace

namespace {
/// The default array's metadata and buffer, shared by every default and moved-from handle.
const std::shared_ptr<const detail::array_impl>& default_impl() noexcept {
    static const std::shared_ptr<const detail::array_impl> impl = [] {
        const auto a = array::from_vector<float>({}, {0.0f});
        return detail::array_access::impl(a);
    }();
    return impl;
}
} // namespace

const detail::array_impl& array::default_meta() noexcept {
    return *default_impl();
}

std::pair<array, void*> array::allocate(paramtree::dtype d, shape_type shape) {
    const std::size_t n = detail::checked_size(shape);
    const std::size_t bytes = std::max<std::size_t>(n * dtype_size(d), 1);
    std::byte* data = nullptr;
    // The elements live in the metadata's own block (owner stays empty: the block is it).
    auto impl =
        std::allocate_shared<detail::array_impl>(tail_allocator<detail::array_impl>(bytes, &data));
    impl->dt = d;
    impl->shape = std::move(shape);
    impl->size = n;
    impl->data = data;
    return {array(std::move(impl)), data};
}

array array::from_owner(paramtree::dtype d, shape_type shape, std::size_t size, const void* data,
                        std::shared_ptr<const void> owner) {
    const std::size_t n = detail::checked_size(shape);
    if (n != size)
        detail::throw_shape("array",
                            fmt::format("{} elements for shape [{}]", n, fmt::join(shape, ",")),
                            fmt::format("{}", size));
    auto impl = std::make_shared<detail::array_impl>();
    impl->dt = d;
    impl->shape = std::move(shape);
    impl->size = n;
    impl->data = static_cast<const std::byte*>(data);
    impl->owner = std::move(owner);
    return array(std::move(impl));
}

array array::full(shape_type shape, double value, paramtree::dtype d) {
    auto result_data = allocate(d, std::move(shape));
    array result = std::move(result_data.first);
    void* data = result_data.second; // named: clang 14 cannot capture bindings
    const std::size_t n = result.size();
    detail::dispatch(d, [&](auto tag) {
        using T = decltype(tag);
        std::fill_n(static_cast<T*>(data), n, static_cast<T>(value));
    });
    return result;
}
array array::zeros(shape_type shape, paramtree::dtype d) {
    return full(std::move(shape), 0.0, d);
}
array array::ones(shape_type shape, paramtree::dtype d) {
    return full(std::move(shape), 1.0, d);
}

array array::arange(std::size_t n, paramtree::dtype d) {
    auto result_data = allocate(d, {n});
    array result = std::move(result_data.first);
    void* data = result_data.second; // named: clang 14 cannot capture bindings
    detail::dispatch(d, [&](auto tag) {
        using T = decltype(tag);
        auto* out = static_cast<T*>(data);
        for (std::size_t i = 0; i < n; ++i)
            out[i] = static_cast<T>(i);
    });
    return result;
}

paramtree::dtype array::dtype() const noexcept {
    return meta().dt;
}
const shape_type& array::shape() const noexcept {
    return meta().shape;
}
std::size_t array::size() const noexcept {
    return meta().size;
}
const std::byte* array::bytes() const noexcept {
    return meta().data;
}

const std::shared_ptr<const detail::trace_slot>& array::trace() const noexcept {
    return meta().trace;
}

namespace {
/// New metadata for the same elements. Elements stored in the source's own block (from
/// `allocate`) are kept alive by referring to that block.
std::shared_ptr<detail::array_impl> copy_meta(const std::shared_ptr<const detail::array_impl>& src,
                                              const detail::array_impl& meta) {
    auto impl = std::make_shared<detail::array_impl>(meta);
    if (!impl->owner && src) impl->owner = src;
    return impl;
}
} // namespace

array array::with_trace(std::shared_ptr<const detail::trace_slot> slot) const {
    auto impl = copy_meta(impl_, meta());
    impl->trace = std::move(slot);
    return array(std::move(impl));
}

namespace detail {
array array_access::with_trace(array a, std::shared_ptr<const trace_slot> slot) {
    if (!a.impl_ || a.impl_.use_count() != 1) return a.with_trace(std::move(slot));
    // Sole owner of metadata that was created non-const: writing it is safe and saves a copy.
    const_cast<array_impl&>(*a.impl_).trace = std::move(slot);
    return a;
}
array array_access::view(const array& a, shape_type shape) {
    auto impl = copy_meta(a.impl_, a.meta());
    impl->shape = std::move(shape);
    impl->trace = nullptr;
    return array(std::move(impl));
}
} // namespace detail

void array::check_dtype(paramtree::dtype d) const {
    if (d != dtype())
        detail::throw_leaf("array element access", {}, fmt::format("dtype {}", dtype_name(d)),
                           fmt::format("dtype {}", dtype_name(dtype())));
}

double array::item(std::size_t i) const {
    if (i >= size())
        detail::throw_path("array::item", {}, fmt::format("an index below {}", size()),
                           fmt::format("{}", i));
    return detail::dispatch(dtype(), [&](auto tag) {
        using T = decltype(tag);
        T v;
        std::memcpy(&v, bytes() + i * sizeof(T), sizeof(T));
        return static_cast<double>(v);
    });
}

std::vector<double> array::to_doubles() const {
    std::vector<double> out(size());
    detail::dispatch(dtype(), [&](auto tag) {
        using T = decltype(tag);
        const auto* p = reinterpret_cast<const T*>(bytes());
        for (std::size_t i = 0; i < out.size(); ++i)
            out[i] = static_cast<double>(p[i]);
    });
    return out;
}

array array::astype(paramtree::dtype d) const {
    if (d == dtype()) return *this;
    if (trace()) return detail::traced_astype(*this, with_trace(nullptr).astype(d));
    auto result_data = allocate(d, shape());
    array result = std::move(result_data.first);
    void* data = result_data.second; // named: clang 14 cannot capture bindings
    detail::dispatch(dtype(), [&](auto src_tag) {
        using S = decltype(src_tag);
        const auto* src = reinterpret_cast<const S*>(bytes());
        detail::dispatch(d, [&](auto dst_tag) {
            using D = decltype(dst_tag);
            auto* dst = static_cast<D*>(data);
            for (std::size_t i = 0; i < size(); ++i)
                dst[i] = static_cast<D>(src[i]);
        });
    });
    return result;
}

array array::reshape(shape_type new_shape) const {
    const std::size_t n = detail::checked_size(new_shape);
    if (n != size())
        detail::throw_shape("reshape", fmt::format("a shape with {} elements", size()),
                            fmt::format("[{}] ({} elements)", fmt::join(new_shape, ","), n));
    array out = detail::array_access::view(*this, std::move(new_shape));
    // Traced (inside a gradient call): record the reshape so the gradient flows back.
    return trace() ? detail::traced_reshape(*this, std::move(out)) : out;
}

bool array_equal(const array& a, const array& b, double rtol, double atol, bool equal_nan) {
    if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
    // One buffer equals itself, except that a NaN is unequal even to itself unless equal_nan:
    // so tree_equal(t, t) and tree_equal(t, load(save(t))) agree.
    if (same_storage(a, b) && (equal_nan || !is_inexact(a.dtype()))) return true;
    return detail::dispatch(a.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const auto* x = detail::data<T>(a);
        const auto* y = detail::data<T>(b);
        const std::size_t n = a.size();
        if constexpr (std::is_floating_point_v<T>) {
            for (std::size_t i = 0; i < n; ++i) {
                const double xi = x[i], yi = y[i];
                if (std::isnan(xi) || std::isnan(yi)) {
                    if (equal_nan && std::isnan(xi) && std::isnan(yi)) continue;
                    return false;
                }
                // Numbers, not bits: -0.0 == 0.0; inf equals only inf of its sign.
                if (xi == yi) continue;
                if (!(std::abs(xi - yi) <= atol + rtol * std::abs(yi))) return false;
            }
            return true;
        } else {
            if (rtol == 0 && atol == 0) return std::equal(x, x + n, y);
            for (std::size_t i = 0; i < n; ++i) {
                const auto xi = static_cast<double>(x[i]), yi = static_cast<double>(y[i]);
                if (!(std::abs(xi - yi) <= atol + rtol * std::abs(yi))) return false;
            }
            return true;
        }
    });
}

} // namespace paramtree
