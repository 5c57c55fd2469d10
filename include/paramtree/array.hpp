// paramtree — `array`: an immutable, reference-counted n-d array handle.
// This header does not include xtensor (see <paramtree/xtensor.hpp> for the bridge), so that
// code that only moves parameters around compiles fast.
#pragma once

#include <complex>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace paramtree {

/// Element types an array can hold.
enum class dtype : std::uint8_t { float32, float64, int32, int64, boolean };

/// Everything paramtree knows about a dtype, in one table: the printers, the array layer and
/// both file formats read it, so a dtype is described in exactly one place.
struct dtype_info {
    dtype type;
    std::string_view name;        ///< numpy's name: `float32`, `int64`, `bool`
    std::string_view short_name;  ///< in printed shapes: `f32`, `i64`, `bool`
    std::size_t size;             ///< bytes per element
    std::string_view safetensors; ///< the safetensors header's dtype: `F32`, `I64`, `BOOL`
    std::string_view npy_kind;    ///< numpy's kind and size code: `f4`, `i8`, `b1`
};

/// The row of `d`.
///
///     assert(pt::info(pt::dtype::float64).safetensors == "F64" &&
///            pt::info(pt::dtype::float64).size == 8);
[[nodiscard]] const dtype_info& info(dtype d) noexcept;
/// Every row, in the enum's order.
[[nodiscard]] std::span<const dtype_info> dtype_table() noexcept;

/// Long name as used by numpy and safetensors lower-cased: `float32`, `int64`, `bool`.
[[nodiscard]] std::string_view dtype_name(dtype d) noexcept;
/// Short name used in pretty printing: `f32`, `f64`, `i32`, `i64`, `bool`.
[[nodiscard]] std::string_view dtype_short_name(dtype d) noexcept;
/// Size in bytes of one element.
[[nodiscard]] std::size_t dtype_size(dtype d) noexcept;
/// True for float32 and float64.
[[nodiscard]] constexpr bool is_inexact(dtype d) noexcept {
    return d == dtype::float32 || d == dtype::float64;
}

/// C++ element types that map one-to-one onto a dtype.
template <class T>
concept element = std::same_as<T, float> || std::same_as<T, double> ||
    std::same_as<T, std::int32_t> || std::same_as<T, std::int64_t> || std::same_as<T, bool>;

/// The dtype of a C++ element type: `dtype_of<float> == dtype::float32`.
template <element T>
inline constexpr dtype dtype_of = std::same_as<T, float>          ? dtype::float32
                                  : std::same_as<T, double>       ? dtype::float64
                                  : std::same_as<T, std::int32_t> ? dtype::int32
                                  : std::same_as<T, std::int64_t> ? dtype::int64
                                                                  : dtype::boolean;

using shape_type = std::vector<std::size_t>;

/// `f32[64,64]`-style text of a dtype and shape.
[[nodiscard]] std::string describe(dtype d, const shape_type& shape);

class array;
namespace detail {
struct array_impl;
struct trace_slot;
struct array_access; // internal: kernels and the autodiff tape (src/)
} // namespace detail

/// An immutable n-d array, row-major and contiguous.
///
/// Copying an `array` copies a pointer (O(1)); two copies share one buffer, which nothing can
/// change. `same_storage(a, b)` tells whether two handles share that buffer. Reshaping and
/// `astype` to the same dtype are zero-copy as well.
///
///     pt::array w = pt::array::zeros({64, 64});
///     pt::array v = w;                 // O(1), same buffer
///     assert(pt::same_storage(v, w));
class array {
public:
    /// A 0-d float32 array holding 0 (one shared buffer: no allocation). A default array and
    /// a moved-from one are the same thing: a null handle that reads as this array.
    array() noexcept = default;
    array(const array&) noexcept = default;
    array& operator=(const array&) noexcept = default;
    /// Moving leaves the source in the default state (0-d float32 holding 0), so a
    /// moved-from array is still a valid array: every call works on it. (The handle keeps a
    /// null pointer that reads as the default array, so a move touches no reference count.)
    array(array&& o) noexcept = default;
    array& operator=(array&& o) noexcept = default;
    ~array() = default;

    /// 1-d, 2-d and 3-d arrays from nested braces: `pt::array{{1.f, 2.f}, {3.f, 4.f}}`.
    template <element T>
    array(std::initializer_list<T> values) : array(from_nested(values)) {}
    template <element T>
    array(std::initializer_list<std::initializer_list<T>> values) : array(from_nested(values)) {}
    template <element T>
    array(std::initializer_list<std::initializer_list<std::initializer_list<T>>> values)
        : array(from_nested(values)) {}

    /// A 0-d array holding `value`.
    template <element T>
    [[nodiscard]] static array scalar(T value) {
        return from_vector<T>({}, std::vector<T>{value});
    }
    /// An array of the given shape filled with zeros, ones or `value`.
    [[nodiscard]] static array zeros(shape_type shape,
                                     paramtree::dtype d = paramtree::dtype::float32);
    [[nodiscard]] static array ones(shape_type shape,
                                    paramtree::dtype d = paramtree::dtype::float32);
    [[nodiscard]] static array full(shape_type shape, double value,
                                    paramtree::dtype d = paramtree::dtype::float32);
    /// `[0, 1, ..., n-1]`.
    [[nodiscard]] static array arange(std::size_t n,
                                      paramtree::dtype d = paramtree::dtype::float32);

    /// An array owning `values` (moved, not copied). Throws shape_error if the sizes differ.
    template <element T>
    [[nodiscard]] static array from_vector(shape_type shape, std::vector<T> values) {
        const auto n = values.size();
        if constexpr (std::same_as<T, bool>) {
            // std::vector<bool> is bit-packed: store one byte per element instead.
            auto bytes = std::make_shared<std::vector<std::uint8_t>>(values.begin(), values.end());
            const void* data = bytes->data();
            return from_owner(paramtree::dtype::boolean, std::move(shape), n, data,
                              std::move(bytes));
        } else {
            auto owner = std::make_shared<std::vector<T>>(std::move(values));
            const void* data = owner->data();
            return from_owner(dtype_of<T>, std::move(shape), n, data, std::move(owner));
        }
    }

    /// An array of `shape` whose elements are written once by `fill` into a fresh buffer.
    ///
    ///     auto a = pt::array::build<float>({3}, [](std::span<float> out) { out[0] = 1; });
    template <element T, class Fill>
    requires std::invocable<Fill&, std::span<T>>
    [[nodiscard]] static array build(shape_type shape, Fill&& fill) {
        auto [result, data] = allocate(dtype_of<T>, std::move(shape));
        std::invoke(fill, std::span<T>(static_cast<T*>(data), result.size()));
        return result;
    }

    /// Wraps memory owned by `owner` (an mmap, an xtensor container, ...) without copying.
    /// `data` must stay valid and unchanged for as long as `owner` lives.
    [[nodiscard]] static array from_owner(paramtree::dtype d, shape_type shape, std::size_t size,
                                          const void* data, std::shared_ptr<const void> owner);

    [[nodiscard]] paramtree::dtype dtype() const noexcept;
    [[nodiscard]] const shape_type& shape() const noexcept;
    [[nodiscard]] std::size_t ndim() const noexcept { return shape().size(); }
    /// Number of elements.
    [[nodiscard]] std::size_t size() const noexcept;
    [[nodiscard]] std::size_t nbytes() const noexcept { return size() * dtype_size(dtype()); }
    /// Raw element bytes (row-major).
    [[nodiscard]] const std::byte* bytes() const noexcept;

    /// The elements as a span of `T`. Throws leaf_error if `T` is not the array's dtype.
    template <element T>
    [[nodiscard]] std::span<const T> values() const& {
        check_dtype(dtype_of<T>);
        return {reinterpret_cast<const T*>(bytes()), size()};
    }
    /// A view into a temporary would dangle: keep the array in a variable first.
    template <element T>
    std::span<const T> values() const&& = delete;
    /// Element `i` (flat, row-major index) converted to double. Throws path_error if out of range.
    [[nodiscard]] double item(std::size_t i = 0) const;
    /// All elements converted to double.
    [[nodiscard]] std::vector<double> to_doubles() const;

    /// A copy converted to `d`; zero-copy when `d` is already the dtype.
    [[nodiscard]] array astype(paramtree::dtype d) const;
    /// The same buffer seen with another shape. Throws shape_error if the sizes differ.
    [[nodiscard]] array reshape(shape_type shape) const;

    /// `f32[64,64]`.
    [[nodiscard]] std::string describe() const { return paramtree::describe(dtype(), shape()); }

    /// Identity of the handle's buffer, for tie detection and hashing.
    [[nodiscard]] const void* storage_id() const noexcept { return bytes(); }

    /// Internal: the autodiff trace attached to this handle, if any (see <paramtree/autodiff.hpp>).
    [[nodiscard]] const std::shared_ptr<const detail::trace_slot>& trace() const noexcept;
    [[nodiscard]] array with_trace(std::shared_ptr<const detail::trace_slot> slot) const;

private:
    friend struct detail::array_access;
    explicit array(std::shared_ptr<const detail::array_impl> impl) : impl_(std::move(impl)) {}
    [[nodiscard]] static std::pair<array, void*> allocate(paramtree::dtype d, shape_type shape);
    void check_dtype(paramtree::dtype d) const;
    /// The metadata, or the default array's for a moved-from handle.
    [[nodiscard]] const detail::array_impl& meta() const noexcept {
        if (impl_) [[likely]]
            return *impl_;
        return default_meta();
    }
    [[nodiscard]] static const detail::array_impl& default_meta() noexcept;

    template <class T>
    static array from_nested(std::initializer_list<T> values) {
        return from_vector<T>({values.size()}, std::vector<T>(values));
    }
    template <class T>
    static array from_nested(std::initializer_list<std::initializer_list<T>> rows);
    template <class T>
    static array
    from_nested(std::initializer_list<std::initializer_list<std::initializer_list<T>>> planes);

    std::shared_ptr<const detail::array_impl> impl_;
};

namespace detail {
/// Throws shape_error unless every row of a nested braced list has the same length.
void check_ragged(std::size_t expected, std::size_t found, std::size_t row);
} // namespace detail

template <class T>
array array::from_nested(std::initializer_list<std::initializer_list<T>> rows) {
    const std::size_t cols = rows.size() == 0 ? 0 : rows.begin()->size();
    std::vector<T> flat;
    flat.reserve(rows.size() * cols);
    std::size_t r = 0;
    for (const auto& row : rows) {
        detail::check_ragged(cols, row.size(), r++);
        flat.insert(flat.end(), row.begin(), row.end());
    }
    return from_vector<T>({rows.size(), cols}, std::move(flat));
}

template <class T>
array array::from_nested(
    std::initializer_list<std::initializer_list<std::initializer_list<T>>> planes) {
    const std::size_t rows = planes.size() == 0 ? 0 : planes.begin()->size();
    const std::size_t cols = rows == 0 ? 0 : planes.begin()->begin()->size();
    std::vector<T> flat;
    flat.reserve(planes.size() * rows * cols);
    std::size_t r = 0;
    for (const auto& plane : planes) {
        detail::check_ragged(rows, plane.size(), r);
        for (const auto& row : plane) {
            detail::check_ragged(cols, row.size(), r++);
            flat.insert(flat.end(), row.begin(), row.end());
        }
    }
    return from_vector<T>({planes.size(), rows, cols}, std::move(flat));
}

/// True when both handles point at the same element buffer.
[[nodiscard]] inline bool same_storage(const array& a, const array& b) noexcept {
    return a.bytes() == b.bytes() && a.nbytes() == b.nbytes();
}

/// Elementwise equality of dtype, shape and values; with `atol`/`rtol` > 0 values may differ
/// by `atol + rtol * |b|` (numpy's allclose). A NaN equals a NaN only with `equal_nan` (as
/// numpy's `equal_nan`), whether or not both handles share a buffer; -0.0 equals 0.0.
///
///     const auto x = pt::array{std::nanf(""), 1.f};
///     assert(!pt::array_equal(x, x) && pt::array_equal(x, x, 0, 0, /*equal_nan=*/true));
[[nodiscard]] bool array_equal(const array& a, const array& b, double rtol = 0, double atol = 0,
                               bool equal_nan = false);

} // namespace paramtree
