// paramtree — internal: the metadata of the sharing node kinds.
// A `shared` node has one child, the pruned tree. Every position a tie removed holds a `tied`
// placeholder whose metadata says where its value comes from (a path relative to the
// Shared node's child) and how it is transformed. Both are plain data, so they take part in
// treedef equality and hashing, print, and can be saved.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <paramtree/array.hpp>
#include <paramtree/detail/node.hpp>
#include <paramtree/path.hpp>
#include <paramtree/transform.hpp>

namespace paramtree {
class tree;
} // namespace paramtree

namespace paramtree::detail {

/// One leaf's dtype and shape (or a non-array leaf's description), for checks on expansion.
struct leaf_aval {
    bool is_array = false;
    paramtree::dtype dt = paramtree::dtype::float32;
    shape_type shape;
    friend bool operator==(const leaf_aval&, const leaf_aval&) = default;
};

struct tie_meta {
    path source;                       // relative to the Shared node's child
    std::vector<transform> transforms; // applied in order to the source value
    /// An arbitrary `get` callable (compared by identity); null when source/transforms apply.
    std::shared_ptr<const std::function<tree(const tree&)>> fn;
    std::string fn_name; // how a callable get prints
    std::size_t hash = 0;
};

struct shared_meta {
    /// Inox-style tags (`'l1'`) per tie source, in depth-first order; empty for plain Shared.
    std::vector<std::pair<std::string, path>> tags;
    std::size_t hash = 0;
};

[[nodiscard]] bool tie_meta_equal(const tie_meta& a, const tie_meta& b);
[[nodiscard]] bool shared_meta_equal(const shared_meta& a, const shared_meta& b);
/// The value a transform chain makes of `v` (arrays are transformed leaf by leaf).
/// The shapes an array of `shape` takes along `chain`: `shape`, then its shape after each
/// transform (a shape_error when one does not apply). The adjoints and inverses walk it back.
[[nodiscard]] std::vector<shape_type> chain_shapes(const shape_type& shape,
                                                   const std::vector<transform>& chain);
[[nodiscard]] tree apply_chain(const tree& v, const std::vector<transform>& chain);
/// The value whose `apply_chain` is `v`, given the current `source` (for shapes).
[[nodiscard]] tree invert_chain(const tree& v, const std::vector<transform>& chain,
                                const tree& source);

/// `@['embedding'].weight.T`: how a placeholder prints.
[[nodiscard]] std::string tie_text(const tie_meta& m);

} // namespace paramtree::detail
