// paramtree — Inox-style tagged references: mark the same subtree with a tag wherever it is
// used, and `scope` turns the later occurrences into ties to the first (depth-first, in
// flatten order). Built on `share`: the result is a Shared node whose metadata keeps the tags.
#pragma once

#include <string>

#include <paramtree/tree.hpp>

namespace paramtree {

/// Marks `subtree` with `tag` (Inox's `nn.Reference(tag, obj)`). The marker is a record
/// `Reference(value=..., tag='...')` until `scope` resolves it.
///
///     auto l1 = pt::reference("l1", linear);
///     auto mlp = pt::scope(pt::record("MLP", {{"l1", l1}, {"l2", l1}}));   // l2 tied to l1
[[nodiscard]] tree reference(std::string tag, const tree& subtree);

/// True for a marker made by `reference`.
[[nodiscard]] bool is_reference(const tree& t);

/// Resolves every reference marker in `t`: markers are replaced by their values; the first
/// occurrence of each tag (depth-first, flatten order) is kept and every later occurrence
/// becomes a tie to it. Throws sharing_error if a later occurrence's structure, dtypes or
/// shapes differ from the first's, naming both paths. A tree without markers is returned as is.
[[nodiscard]] tree scope(const tree& t);

} // namespace paramtree
