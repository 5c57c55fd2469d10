// paramtree — parameter sharing: the Shared node kind (Equinox's eqx.nn.Shared), expand and
// its transpose contract, untie, tie introspection, and the PyTorch / Inox / alias styles
// expressed on the same mechanism.
//
// `share(tree, where, get)` returns a Shared node whose child is `tree` with every `where`
// node replaced by a leafless *tied placeholder* that records where its value comes from (a
// path plus named transforms, or a callable). Flattening therefore yields each tied value
// once, and the tie is part of the treedef: it survives flatten, unflatten, tree_map,
// partition/combine, tree_at, printing and saving. `expand` puts the source back at every tied
// position — the same array handle, zero-copy — and `contract` sums values given at tied
// positions back onto their sources (through each transform's adjoint): how gradients of tied
// weights add up.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <paramtree/at.hpp>
#include <paramtree/path.hpp>
#include <paramtree/transform.hpp>
#include <paramtree/tree.hpp>

namespace paramtree {

/// Where a tied value comes from: a node of the shared tree, then named transforms.
///
///     auto get = pt::source(pt::parse_path("[0].weight"), {pt::transform::transpose()});
struct source {
    path from;
    std::vector<transform> transforms;
    source(path p, std::vector<transform> t = {}) : from(std::move(p)), transforms(std::move(t)) {}
};

/// An arbitrary `get`: a function of the pruned tree returning the value for a tied position.
/// Compared by identity (two separately made getters are different ties), printed by `name`.
struct getter {
    std::shared_ptr<const std::function<tree(const tree&)>> fn;
    std::string name;
    getter(std::function<tree(const tree&)> f, std::string n = "get")
        : fn(std::make_shared<const std::function<tree(const tree&)>>(std::move(f))),
          name(std::move(n)) {}
};

namespace detail {
struct get_entry {
    path from;
    std::vector<transform> transforms;
    std::shared_ptr<const std::function<tree(const tree&)>> fn;
    std::string fn_name;
};
[[nodiscard]] tree share_impl(const tree& t, std::vector<path> where, std::vector<get_entry> gets,
                              std::vector<std::pair<std::string, path>> tags = {});
/// The tie placeholder share puts at a where node for `g`.
[[nodiscard]] tree tie_placeholder(const get_entry& g);
/// The Shared node over `pruned` (whose placeholders are relative to it), with reference tags.
[[nodiscard]] tree scope_over(const tree& pruned, std::vector<std::pair<std::string, path>> tags);
/// A sharing_error from `context` naming the first tie placeholder of `t` that lies outside
/// every Shared node (a placeholder cut from its scope, by tree::child): its source cannot be
/// found. O(1) for a tree with no such placeholder at its top.
void check_no_dangling(const tree& t, std::string_view context);
/// The Shared node over `content` whose ties are placeholders already (a decoded checkpoint:
/// the file stores no value for a tie): checks what share_impl would, without building the
/// tied values (a transposed tie is not copied only to be pruned again) — where and get nodes
/// disjoint, each source present and untied, its arrays fitting the transforms.
[[nodiscard]] tree shared_scope(const tree& content, const std::vector<path>& where,
                                const std::vector<get_entry>& gets,
                                std::vector<std::pair<std::string, path>> tags);

template <class G>
std::vector<get_entry> resolve_get(const G& get, const tree& t) {
    using D = std::decay_t<G>;
    // Sources are spelled as the tree spells them (as where paths are): `.a.w` and `['a']['w']`
    // name one dict child, and only one spelling lets share see a tie to itself or a cycle.
    if constexpr (std::same_as<D, source>) {
        return {get_entry{canonical_paths(t, {get.from})[0], get.transforms, nullptr, {}}};
    } else if constexpr (std::same_as<D, std::vector<source>>) {
        std::vector<get_entry> out;
        for (const auto& s : get)
            out.push_back(get_entry{canonical_paths(t, {s.from})[0], s.transforms, nullptr, {}});
        return out;
    } else if constexpr (std::same_as<D, getter>) {
        return {get_entry{{}, {}, get.fn, get.name}};
    } else if constexpr (std::same_as<D, std::vector<getter>>) {
        std::vector<get_entry> out;
        for (const auto& g : get)
            out.push_back(get_entry{{}, {}, g.fn, g.name});
        return out;
    } else {
        std::vector<get_entry> out;
        for (auto& p : resolve_where(get, t))
            out.push_back(get_entry{std::move(p), {}, nullptr, {}});
        return out;
    }
}
} // namespace detail

/// What `get` may be: like `where` (a path, paths, a selector callable), or `source`s with
/// transforms, or `getter`s (arbitrary callables).
template <class G>
concept get_spec = where_spec<G> || std::same_as<std::decay_t<G>, source> ||
    std::same_as<std::decay_t<G>, std::vector<source>> || std::same_as<std::decay_t<G>, getter> ||
    std::same_as<std::decay_t<G>, std::vector<getter>>;

/// Ties the nodes `where` selects to the nodes `get` selects (one get for all, or one per
/// where node). The result is a Shared node holding `t` with every where node pruned to a
/// leafless placeholder. Throws sharing_error if the counts differ, a get value (after its
/// transforms) differs in structure, dtype or shape from the node it replaces, a where node
/// contains a get node or lies inside one, or a get node is itself tied; path_error if a path
/// does not exist.
///
///     // Equinox's tied embedding: the linear layer's weight is the embedding's weight.
///     auto lm = pt::share(pt::tuple({embedding, linear}),
///                         [](pt::selector s) { return s[1]["weight"]; },
///                         [](pt::selector s) { return s[0]["weight"]; });
///     assert(lm.num_leaves() == 2);              // embedding.weight and linear.bias
template <where_spec W, get_spec G>
[[nodiscard]] tree share(const tree& t, const W& where, const G& get) {
    return detail::share_impl(t, detail::resolve_where(where, t), detail::resolve_get(get, t));
}

/// PyTorch-style tying: every node at `targets` becomes the node at `source_path`
/// (`linear2.weight = linear1.weight`). Sugar for `share` with an identity get.
///
///     auto tied = pt::tie(model, std::vector{pt::parse_path(".linear2.weight"),
///                                            pt::parse_path(".linear2.bias")},
///                         std::vector{pt::parse_path(".linear1.weight"),
///                                     pt::parse_path(".linear1.bias")});
[[nodiscard]] tree tie(const tree& t, const std::vector<path>& targets,
                       const std::vector<path>& sources);
[[nodiscard]] tree tie(const tree& t, const path& target, const path& source_path);
/// The same with path text, keystr or dotted as checkpoints print it.
///
///     auto tied = pt::tie(model, "linear2.weight", "linear1.weight");
[[nodiscard]] tree tie(const tree& t, std::string_view target, std::string_view source_path);
[[nodiscard]] tree tie(const tree& t, const std::vector<std::string>& targets,
                       const std::vector<std::string>& sources);

/// The tree with every Shared node replaced by its child and every tied placeholder by its
/// source value: the same handle for identity ties (zero-copy, whatever the array size), the
/// transformed value otherwise. Visits only the paths that lead to ties.
///
///     auto full = pt::expand(lm);          // lm: a tuple (embedding, linear), weights tied
///     assert(pt::same_storage(full[0]["weight"].as_array(), full[1]["weight"].as_array()));
[[nodiscard]] tree expand(const tree& t);

/// The transpose of `expand`: given a tree with the structure of `expand(t)` (e.g. gradients
/// computed on the expanded model), returns a tree with the structure of `t` in which every
/// tied position's value has been added onto its source — through the adjoint of the tie's
/// transforms (a transposed tie's gradient is transposed back). Throws structure_error if
/// `expanded` does not have the structure of `expand(t)`, sharing_error for a callable get
/// (it has no adjoint).
[[nodiscard]] tree contract(const tree& t, const tree& expanded);

/// `t` with the ties at `where` broken on purpose: each selected placeholder gets its own
/// copy of the (transformed) source value, so the positions train independently from now on.
/// Throws sharing_error if a selected node is not a tie.
template <where_spec W>
[[nodiscard]] tree untie(const tree& t, const W& where);

/// One tie: a tied position, the position it takes its value from, and how.
struct tie_info {
    path tied;                         // full path of the placeholder
    path source;                       // full path of the source (empty for a callable get)
    std::vector<transform> transforms; // applied to the source, in order
    std::string getter;                // the name of a callable get, else empty
};
/// Every tie of `t`, in pre-order of the tied positions.
[[nodiscard]] std::vector<tie_info> ties(const tree& t);

/// A source and every position tied to it: what a partitioner must keep together.
struct tie_group {
    path source;
    std::vector<path> tied;
};
/// The tie groups of `t`, in pre-order of their sources.
[[nodiscard]] std::vector<tie_group> tie_groups(const tree& t);

/// Float parameters counted once per tie (what is trained) and once per use (what a model
/// without ties would hold).
struct parameter_count {
    std::size_t arrays = 0;            // float array leaves of t
    std::size_t elements = 0;          // their elements
    std::size_t expanded_arrays = 0;   // float array leaves of expand(t)
    std::size_t expanded_elements = 0; // their elements
};
[[nodiscard]] parameter_count count_parameters(const tree& t);

namespace detail {
[[nodiscard]] tree untie_paths(const tree& t, const std::vector<path>& where);
}
template <where_spec W>
tree untie(const tree& t, const W& where) {
    return detail::untie_paths(t, detail::resolve_where(where, t));
}

} // namespace paramtree
