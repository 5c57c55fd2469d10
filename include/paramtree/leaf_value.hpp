// paramtree — what a leaf holds: an array, or a Python-like scalar (bool, integer, float, string)
// that flattens like any leaf; `std::monostate` for an interior node.
#pragma once

#include <cstdint>
#include <string>
#include <variant>

#include <paramtree/array.hpp>

namespace paramtree {

/// The value of a leaf (`tree::value()`). monostate first: interior nodes must not construct
/// (and allocate) an array.
using leaf_value = std::variant<std::monostate, array, bool, std::int64_t, double, std::string>;

} // namespace paramtree
