// paramtree — named, invertible value transforms for ties (`get` in Shared).
// A closed set of plain-data transforms — identity, transpose/permute, reshape, scale — so a
// tie that transposes an embedding into an output projection is printable, comparable,
// savable, shape-checked at construction, and has an adjoint for summing gradients.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <paramtree/array.hpp>

namespace paramtree {

/// One named transform of an array.
///
///     const auto w = pt::array::ones({10, 4}), gwt = pt::array::ones({4, 10});
///     auto t = pt::transform::transpose();          // prints as `.T`
///     pt::array wt = t.apply(w);                     // [V, D] -> [D, V]
///     pt::array g = t.adjoint(gwt, w.shape());       // gradient back to [V, D]
class transform {
public:
    enum class op : unsigned char { identity, permute, reshape, scale };

    /// Does nothing (the default).
    transform() = default;
    /// Reverses the axes (matrix transpose for 2-d arrays).
    [[nodiscard]] static transform transpose();
    /// Permutes axes: output axis i is input axis `axes[i]`.
    [[nodiscard]] static transform permute(std::vector<std::size_t> axes);
    /// Views the array with another shape of the same size.
    [[nodiscard]] static transform reshape(shape_type shape);
    /// Multiplies every element by `factor` (inexact dtypes only).
    [[nodiscard]] static transform scale(double factor);

    [[nodiscard]] op kind() const noexcept { return op_; }
    [[nodiscard]] const std::vector<std::size_t>& axes() const noexcept { return axes_; }
    [[nodiscard]] const shape_type& shape() const noexcept { return shape_; }
    [[nodiscard]] double factor() const noexcept { return factor_; }

    /// The dtype and shape `apply` produces from an input of `in`; throws shape_error.
    [[nodiscard]] shape_type output_shape(const shape_type& in) const;
    /// The transformed array (a copy for permute/scale, zero-copy for identity/reshape).
    [[nodiscard]] array apply(const array& a) const;
    /// The adjoint (for these linear maps, the transpose): maps a cotangent of the output
    /// back to a cotangent of the input, whose shape is `input_shape`.
    [[nodiscard]] array adjoint(const array& cotangent, const shape_type& input_shape) const;
    /// The inverse map: given an output of `apply`, the input it came from (whose shape is
    /// `input_shape`). Throws shape_error for a scale by 0, which has no inverse.
    [[nodiscard]] array inverse(const array& output, const shape_type& input_shape) const;
    /// `.T`, `.permute(1,0,2)`, `.reshape(4,16)`, `*0.5`; empty for identity.
    [[nodiscard]] std::string to_string() const;
    /// Parses what to_string printed (used by checkpoints). Throws format_error.
    [[nodiscard]] static transform parse(const std::string& text);

    friend bool operator==(const transform&, const transform&) = default;

private:
    op op_ = op::identity;
    std::vector<std::size_t> axes_;
    shape_type shape_;
    double factor_ = 1.0;
};

/// Text of a chain of transforms applied in order: `.T*0.5`.
[[nodiscard]] std::string to_string(const std::vector<transform>& chain);

/// `a` with its axes permuted: output axis i is input axis `axes[i]`. Throws shape_error.
/// Recorded inside a gradient call (its adjoint is the inverse permutation).
///
///     const pt::array x = pt::array::zeros({2, 3, 4});
///     const pt::array y = pt::permute_axes(x, {2, 0, 1});
///     assert((y.shape() == pt::shape_type{4, 2, 3}));
[[nodiscard]] array permute_axes(const array& a, const std::vector<std::size_t>& axes);

} // namespace paramtree
