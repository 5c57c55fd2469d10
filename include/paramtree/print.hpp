// paramtree — pretty printing in the Equinox style: `Linear(weight=f32[64,64], bias=f32[64])`.
// Arrays print as dtype and shape, scalars by value, ties as `@source.T`. Subtrees that fit
// in the width stay on one line; others break with indentation. Iterative: deep trees print.
#pragma once

#include <cstddef>
#include <iosfwd>
#include <string>

#include <paramtree/tree.hpp>

namespace paramtree {

struct print_options {
    std::size_t width = 80;             // break a node over several lines when it does not fit
    std::size_t indent = 2;             // spaces per nesting level
    std::size_t max_indent_levels = 32; // deeper levels stop adding indentation
};

/// Multi-line pretty form.
///
///     std::cout << pt::pformat(model) << "\n";
///     // MLP(
///     //   layers=[Linear(weight=f32[64,32], bias=f32[64]), ...],
///     //   ...
[[nodiscard]] std::string pformat(const tree& t, const print_options& options = {});

/// One-line short form: `{'w': f32[3], 'lr': 0.1}`.
[[nodiscard]] std::string to_string(const tree& t);

/// A compact model summary, one line per module (record) type: how many there are and the
/// float parameters they hold themselves (not those of nested modules), then the ties and the
/// totals. For a model whose full `pformat` runs to pages.
///
///     std::cout << pt::summary(model);
///     // GPT: 209,920 trained parameters in 30 arrays (222,208 if each use held a copy)
///     //   module            count  own parameters
///     //   Embedding             2          14,336
///     //   ...
///     //   tie: .head.weight is .embed.weight
[[nodiscard]] std::string summary(const tree& t);

/// Writes the one-line form.
std::ostream& operator<<(std::ostream& os, const tree& t);

} // namespace paramtree
