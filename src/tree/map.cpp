// paramtree — structure checks for tree_map, broadcast_prefix, truthy, tree_transpose.
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/walk.hpp>
#include <paramtree/map.hpp>

#include <fmt/format.h>

namespace paramtree {

namespace detail {

flat_inputs flatten_all(const char* context, std::span<const tree* const> trees,
                        const leaf_predicate& is_leaf, bool with_paths,
                        std::span<const std::string_view> names) {
    flat_inputs out;
    out.leaves.reserve(trees.size());
    for (std::size_t k = 0; k < trees.size(); ++k) {
        if (k == 0 && with_paths) {
            auto flat = flatten_with_path(*trees[0], is_leaf);
            std::vector<tree> leaves;
            leaves.reserve(flat.leaves.size());
            out.paths.reserve(flat.leaves.size());
            for (auto& [p, l] : flat.leaves) {
                out.paths.push_back(std::move(p));
                leaves.push_back(std::move(l));
            }
            out.def = std::move(flat.def);
            out.leaves.push_back(std::move(leaves));
            continue;
        }
        auto flat = is_leaf ? flatten(*trees[k], is_leaf) : flatten(*trees[k]);
        if (k == 0) {
            out.def = std::move(flat.def);
        } else if (!(flat.def == out.def)) {
            if (names.size() == trees.size())
                throw_structure_mismatch(context, out.def, flat.def, names[0], names[k]);
            throw_structure_mismatch(context, out.def, flat.def, k);
        }
        out.leaves.push_back(std::move(flat.leaves));
    }
    return out;
}

void rethrow_at_leaf(const error& e, const char* context, const treedef& def, std::size_t i) {
    if (!e.path().empty()) throw; // already names a place (in the tree it was raised for)
    rethrow_as(e, fmt::format("{} (in {})", e.context(), context), def.leaf_paths().at(i));
}

} // namespace detail

tree broadcast_prefix(const tree& prefix, const tree& full) {
    auto [prefix_leaves, prefix_def] = flatten(prefix);
    const auto subtrees = flatten_up_to(prefix_def, full);
    std::vector<tree> out;
    out.reserve(full.num_leaves());
    for (std::size_t i = 0; i < subtrees.size(); ++i)
        for (std::size_t n = subtrees[i].num_leaves(); n > 0; --n)
            out.push_back(prefix_leaves[i]);
    return unflatten(structure(full), std::move(out));
}

bool truthy(const tree& leaf) {
    if (!leaf.is_leaf()) return leaf.num_leaves() > 0;
    return std::visit(
        [](const auto& v) -> bool {
            using V = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<V, std::monostate>) {
                return false;
            } else if constexpr (std::is_same_v<V, array>) {
                for (const double x : v.to_doubles())
                    if (x == 0) return false;
                return true;
            } else if constexpr (std::is_same_v<V, std::string>) {
                return !v.empty();
            } else {
                return v != V{};
            }
        },
        leaf.value());
}

tree tree_transpose(const treedef& outer, const treedef& inner, const tree& t) {
    // Without a leaf the composed structure forgets the other one (t is the outer structure
    // alone): optree refuses it too.
    for (const auto& [what, side] : {std::pair{"outer", &outer}, std::pair{"inner", &inner}})
        if (side->num_leaves() == 0)
            detail::throw_structure("tree_transpose", {},
                                    fmt::format("an {} structure with at least one leaf", what),
                                    side->to_string());
    auto [leaves, def] = flatten(t);
    const auto expected = outer.compose(inner);
    if (!(def == expected)) {
        const auto d = detail::first_difference(expected, def);
        detail::throw_structure("tree_transpose", d ? d->where : path{},
                                d ? d->left : expected.to_string(), d ? d->right : def.to_string());
    }
    const std::size_t n_outer = outer.num_leaves();
    const std::size_t n_inner = inner.num_leaves();
    std::vector<tree> columns;
    columns.reserve(n_inner);
    for (std::size_t j = 0; j < n_inner; ++j) {
        std::vector<tree> column;
        column.reserve(n_outer);
        for (std::size_t i = 0; i < n_outer; ++i)
            column.push_back(leaves[i * n_inner + j]);
        columns.push_back(unflatten(outer, std::move(column)));
    }
    return unflatten(inner, std::move(columns));
}

} // namespace paramtree
