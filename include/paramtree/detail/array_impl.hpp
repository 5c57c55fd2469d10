// paramtree — internal: what an array handle points at.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <utility>

#include <paramtree/array.hpp>

namespace paramtree::detail {

struct array_impl {
    paramtree::dtype dt = paramtree::dtype::float32;
    shape_type shape;
    std::size_t size = 0;
    const std::byte* data = nullptr;
    std::shared_ptr<const void> owner;       // keeps `data` alive
    std::shared_ptr<const trace_slot> trace; // set only while a gradient is being taken
};

/// What kernels and the tape may do that the public API may not.
struct array_access {
    /// A fresh array of `shape` and the writable buffer behind it, which the caller fills
    /// before anyone else sees the array.
    [[nodiscard]] static std::pair<array, void*> allocate(paramtree::dtype d, shape_type shape) {
        return array::allocate(d, std::move(shape));
    }
    /// `a` with `slot` attached; in place when `a` is the only handle to its metadata (a
    /// freshly computed result), else on a copy of the metadata. Never copies elements.
    [[nodiscard]] static array with_trace(array a, std::shared_ptr<const trace_slot> slot);
    /// The shared metadata behind a handle.
    [[nodiscard]] static const std::shared_ptr<const array_impl>& impl(const array& a) noexcept {
        return a.impl_;
    }
    /// `a`'s buffer seen with `shape` (same size; unchecked) and no trace.
    [[nodiscard]] static array view(const array& a, shape_type shape);
};

/// The elements of `a` as T (the caller has dispatched on its dtype).
template <element T>
[[nodiscard]] const T* data(const array& a) noexcept {
    return reinterpret_cast<const T*>(a.bytes());
}

/// A fresh array and its writable buffer, which the caller fills before anyone else sees the
/// array. Named fields rather than a pair: lambdas capture them (clang 14 cannot capture
/// structured bindings), and the buffer comes typed instead of as a void* to cast at each use.
template <class T>
struct fresh_array {
    array value;
    T* data;
};

/// A fresh array of T's dtype (`fresh<float>({rows, cols})` is float32).
template <element T>
[[nodiscard]] fresh_array<T> fresh(shape_type shape) {
    auto made = array_access::allocate(dtype_of<T>, std::move(shape));
    return {std::move(made.first), static_cast<T*>(made.second)};
}

/// fresh<T>(shape) with every element zero: gradients that scatter-add into their input's
/// shape (pooling, convolution).
template <element T>
[[nodiscard]] fresh_array<T> fresh_zeros(shape_type shape) {
    auto made = fresh<T>(std::move(shape));
    std::fill_n(made.data, made.value.size(), T{});
    return made;
}

/// A fresh array of any dtype `d`, as bytes (copies and decoders that move bytes of any type).
[[nodiscard]] inline fresh_array<std::byte> fresh_bytes(paramtree::dtype d, shape_type shape) {
    auto made = array_access::allocate(d, std::move(shape));
    return {std::move(made.first), static_cast<std::byte*>(made.second)};
}

/// Calls `f` with a value of the C++ element type of `d` (e.g. `float{}` for float32).
template <class F>
decltype(auto) dispatch(paramtree::dtype d, F&& f) {
    switch (d) {
    case paramtree::dtype::float32:
        return f(float{});
    case paramtree::dtype::float64:
        return f(double{});
    case paramtree::dtype::int32:
        return f(std::int32_t{});
    case paramtree::dtype::int64:
        return f(std::int64_t{});
    case paramtree::dtype::boolean:
        return f(bool{});
    }
    return f(float{});
}

/// Product of the extents; throws shape_error if it overflows.
[[nodiscard]] std::size_t checked_size(const shape_type& shape);

} // namespace paramtree::detail
