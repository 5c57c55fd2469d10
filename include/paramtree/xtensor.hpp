// paramtree — the bridge between paramtree arrays and xtensor. The only public header that
// includes xtensor: code that just moves parameters around does not pay for it.
#pragma once

#include <memory>
#include <type_traits>
#include <utility>

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xeval.hpp>

#include <paramtree/array.hpp>

namespace paramtree {

/// A read-only xtensor view of an array's buffer (no copy). `T` must be the array's dtype,
/// else leaf_error. The view is valid while `a` (or a copy of it) lives.
///
///     const auto w = pt::array::ones({2, 3});
///     auto v = pt::as_xtensor<float>(w);      // xt expression over w's buffer
///     float total = xt::sum(v)();
///     assert(total == 6);
template <element T>
[[nodiscard]] auto as_xtensor(const array& a) {
    const auto values = a.values<T>();
    return xt::adapt(values.data(), values.size(), xt::no_ownership(), a.shape());
}

/// A copy of the array as an `xt::xarray<T>` (converting the dtype if needed).
template <element T>
[[nodiscard]] xt::xarray<T> to_xarray(const array& a) {
    const array c = a.astype(dtype_of<T>);
    return xt::xarray<T>(as_xtensor<T>(c));
}

/// An array from an xtensor expression: evaluated once; an `xt::xarray` rvalue is adopted
/// without copying its buffer.
///
///     pt::array a = pt::from_xtensor(xt::xarray<float>{{1, 2}, {3, 4}});
template <class E>
[[nodiscard]] array from_xtensor(E&& expr) {
    using value_type = typename std::decay_t<E>::value_type;
    static_assert(element<value_type>, "paramtree arrays hold float, double, int32, int64 or bool");
    auto owned = std::make_shared<xt::xarray<value_type>>(std::forward<E>(expr));
    shape_type shape(owned->shape().begin(), owned->shape().end());
    if constexpr (std::is_same_v<value_type, bool>) {
        std::vector<bool> flat(owned->begin(), owned->end());
        return array::from_vector<bool>(std::move(shape), std::move(flat));
    } else {
        const void* data = owned->data();
        const auto n = owned->size();
        return array::from_owner(dtype_of<value_type>, std::move(shape), n, data, std::move(owned));
    }
}

} // namespace paramtree
