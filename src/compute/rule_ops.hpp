// paramtree — internal: the arithmetic of backward rules, in the mode the backward pass asks
// for. A first-order pass (the common case) computes cotangents with kernels and records
// nothing; a differentiable pass (a gradient that will itself be differentiated) computes
// them with the recorded operations of ops.hpp, on traced inputs. Writing a rule once against
// `rule_ops` gives it both forms, so the second-order rule cannot drift from the first.
#pragma once

#include <paramtree/array.hpp>
#include <paramtree/detail/tape.hpp>
#include <paramtree/ops.hpp>

#include "compute/kernels.hpp"

#include <cstddef>
#include <vector>

namespace paramtree::detail {

/// `g` summed over the axes numpy broadcasting added to reach it from `shape` (the
/// transpose of broadcast_to), as a recorded operation.
[[nodiscard]] array sum_to(const array& g, const shape_type& shape);

class rule_ops {
public:
    explicit rule_ops(const cotangent_sink& s) noexcept : graph_(s.differentiable()) {}
    [[nodiscard]] bool graph() const noexcept { return graph_; }

    [[nodiscard]] array add(const array& a, const array& b) const {
        return graph_ ? paramtree::add(a, b) : kernels::add(a, b);
    }
    [[nodiscard]] array sub(const array& a, const array& b) const {
        return graph_ ? paramtree::subtract(a, b) : kernels::sub(a, b);
    }
    [[nodiscard]] array mul(const array& a, const array& b) const {
        return graph_ ? paramtree::multiply(a, b) : kernels::mul(a, b);
    }
    [[nodiscard]] array div(const array& a, const array& b) const {
        return graph_ ? paramtree::divide(a, b) : kernels::div(a, b);
    }
    [[nodiscard]] array neg(const array& a) const {
        return graph_ ? paramtree::negative(a) : kernels::neg(a);
    }
    [[nodiscard]] array scale(const array& a, double s) const {
        return graph_ ? a * s : kernels::scale(a, s);
    }
    [[nodiscard]] array sum_to(const array& g, const shape_type& shape) const {
        return graph_ ? detail::sum_to(g, shape) : kernels::sum_to(g, shape);
    }
    [[nodiscard]] array broadcast_to(const array& g, const shape_type& shape) const {
        return graph_ ? paramtree::broadcast_to(g, shape) : kernels::broadcast_to(g, shape);
    }
    [[nodiscard]] array view(const array& g, shape_type shape) const {
        return graph_ ? g.reshape(std::move(shape)) : kernels::view(g, std::move(shape));
    }
    [[nodiscard]] array permute(const array& g, const std::vector<std::size_t>& perm) const {
        if (!graph_) return kernels::permute(g, perm);
        return paramtree::transpose(g, std::vector<int>(perm.begin(), perm.end()));
    }
    /// `mask ? g : 0` broadcast to `shape` (the mask is a constant).
    [[nodiscard]] array select(const array& mask, const array& a, const array& b,
                               const shape_type& shape) const {
        if (!graph_) return kernels::select(mask, a, b, shape);
        return paramtree::broadcast_to(paramtree::where(mask, a, b), shape);
    }

private:
    bool graph_;
};

} // namespace paramtree::detail
