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
#include <string_view>
#include <utility>
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

/// A tie placeholder and where it sits below the node walked.
struct scope_tie {
    path at;
    const node* placeholder;
};
/// The placeholders below `n` that belong to the scope `n` lies in: every tied node under `n`
/// that is not inside a Shared node of its own (whose ties are relative to it), in pre-order.
/// Visits only the paths that lead to ties.
[[nodiscard]] std::vector<scope_tie> own_ties(const node& n);

/// The Shared chain `n` (`Shared(Shared(...content))`, or a plain node) merged into the scope
/// that encloses it: its content with each placeholder of its own scope re-sourced under
/// `prefix` (the chain's position relative to the enclosing scope's content), and its tags
/// under `tag_prefix`. A tie through a callable cannot move to another scope (the callable
/// reads the scope it was made in): sharing_error from `context` naming `where`.
struct merged_scope {
    node_ptr content;
    std::vector<std::pair<std::string, path>> tags;
};
[[nodiscard]] merged_scope merge_scope(node_ptr n, const path& prefix, const path& tag_prefix,
                                       std::string_view context, const path& where);

/// The subtree at `p` as a self-contained tree (what `tree::at` and `pt::extract` return): a
/// tie of the enclosing scope whose source lies inside it is kept (under a Shared node of its
/// own), one whose source lies outside is materialised, or refused (sharing_error from
/// `context`) when `refuse_outside`.
[[nodiscard]] tree sub_model(const tree& t, const path& p, bool refuse_outside,
                             std::string_view context);

/// The sources of the scope with content `scope` that hold ties themselves, each after every
/// source it reads: the order expand fills them in. A cycle of ties (a source holding a tie
/// that leads back to it) is a sharing_error from `context`.
[[nodiscard]] std::vector<const node*> fill_order(const node& scope, std::string_view context);

/// Checks that `value` through `chain` can stand where `target` stands: the same structure and,
/// leaf by leaf, dtype and shape (shapes only, nothing copied). sharing_error from `context`
/// at `where` otherwise, `what()` naming where the value comes from.
void check_fits(std::string_view context, const path& where, const tree& target, const tree& value,
                const std::vector<transform>& chain, const std::function<std::string()>& what);

} // namespace paramtree::detail
