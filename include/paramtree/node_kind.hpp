// paramtree — what a tree node is: the vocabulary of `tree::kind()`, treedef nodes and the
// printers.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include <paramtree/detail/enum_names.hpp>

namespace paramtree {

/// What a node is. `shared` roots a tie scope; `tied` is the leafless placeholder that a
/// Shared node leaves where it pruned a duplicate (see <paramtree/shared.hpp>).
enum class node_kind : std::uint8_t { leaf, none, list, tuple, dict, record, shared, tied };

/// Text of a node kind: `leaf`, `None`, `list`, `tuple`, `dict`, `record`, `Shared`, `tied`.
///
///     assert(pt::kind_name(pt::node_kind::shared) == "Shared");
[[nodiscard]] constexpr std::string_view kind_name(node_kind k) noexcept {
    constexpr std::array<std::string_view, 8> names{"leaf", "None",   "list",   "tuple",
                                                    "dict", "record", "Shared", "tied"};
    return detail::name_in(names, k);
}

} // namespace paramtree
