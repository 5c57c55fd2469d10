// paramtree — Graphviz DOT of a tree. A tied value is ONE node with several incoming edges
// (dashed, labelled with the tie's transform), so a picture shows what is shared.
#pragma once

#include <string>

#include <paramtree/tree.hpp>

namespace paramtree {

/// DOT text of `t` (`dot -Tsvg` renders it). Interior nodes show their kind or record name,
/// leaves their dtype and shape or value.
///
///     std::ofstream("model.dot") << pt::to_dot(model, "model");
[[nodiscard]] std::string to_dot(const tree& t, const std::string& name = "tree");

} // namespace paramtree
