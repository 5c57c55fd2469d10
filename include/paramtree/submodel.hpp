// paramtree — sub-models of tied models: taking a subtree out of a tree with ties, and putting
// one back.
//
// A tie's placeholder reads its value from the Shared node that encloses it, so a subtree cut
// below that node would hold placeholders whose source is nowhere (a decoder whose embedding is
// `@encoder.embed`). Every way to a subtree — `tree::at`, `operator[]`, selectors, `extract` —
// returns a *self-contained* tree instead: a tie whose source lies inside the subtree stays a
// tie (under a Shared node of the subtree's own, its source re-rooted), and a tie whose source
// lies outside gets its source's value, or is refused when asked. `graft` is the way back: it
// puts a sub-model in place and keeps the enclosing model's ties, in both directions.
#pragma once

#include <string_view>
#include <vector>

#include <paramtree/at.hpp>
#include <paramtree/path.hpp>
#include <paramtree/tree.hpp>

namespace paramtree {

/// What a sub-model does with a tie whose source lies outside it.
enum class outside_ties {
    materialize, ///< the position holds the source's value (transformed): a plain subtree
    refuse       ///< sharing_error naming the tie and its source
};

namespace detail {
[[nodiscard]] tree extract_at(const tree& t, const std::vector<path>& where, outside_ties policy);
[[nodiscard]] tree graft_at(const tree& t, const std::vector<path>& where, const tree& sub);
} // namespace detail

/// The subtree `where` selects (one node) as a self-contained model: ties inside it are kept,
/// ties to sources outside it are materialised (the default, what `tree::at` does) or refused.
/// `expand(extract(t, p))` is `expand(t).at(p)`. Throws path_error if `where` does not select
/// exactly one existing node; sharing_error for a refused tie.
///
///     // A tied encoder-decoder: the decoder's embedding is the encoder's.
///     auto enc = pt::record("Enc", {{"embed", pt::array::ones({4, 2})}});
///     auto dec = pt::record("Dec", {{"embed", pt::array::zeros({4, 2})},
///                                   {"out", pt::array::zeros({2})}});
///     auto m = pt::share(pt::record("Seq2Seq", {{"encoder", enc}, {"decoder", dec}}),
///                        ".decoder.embed", ".encoder.embed");
///     auto decoder = pt::extract(m, ".decoder");      // embed: the encoder's values
///     assert(decoder["embed"].as_array().item(0) == 1);
///     try {   // refusing instead names the tie
///         (void)pt::extract(m, ".decoder", pt::outside_ties::refuse);
///         assert(false);
///     } catch (const pt::sharing_error& e) {
///         assert(e.where() && *e.where() == pt::parse_path(".decoder.embed"));
///     }
template <where_spec W>
[[nodiscard]] tree extract(const tree& t, const W& where,
                           outside_ties policy = outside_ties::materialize) {
    return detail::extract_at(t, detail::resolve_where(where, t), policy);
}

/// `t` with the node `where` selects replaced by the sub-model `sub`, the ties of `t` kept:
/// * `sub`'s own ties (a Shared node at its top, as `extract` makes) join `t`'s scope;
/// * a tied position inside the region whose source lies outside it stays tied, and the value
///   `sub` holds there is written to the source (through the inverse of the tie's transforms),
///   as `tree_at` writes through a tie; two uses that give one source different values are
///   refused;
/// * a tie from the rest of `t` whose source lies inside the region reads the new source,
///   which must exist in `sub` with the old one's structure, dtypes and shapes.
/// So `graft(t, p, extract(t, p))` equals `t`. Throws path_error if `where` does not select
/// exactly one existing node; sharing_error naming the tie when a tie cannot be kept.
///
///     auto enc = pt::record("Enc", {{"embed", pt::array::ones({4, 2})}});
///     auto dec = pt::record("Dec", {{"embed", pt::array::zeros({4, 2})},
///                                   {"out", pt::array::zeros({2})}});
///     auto m = pt::share(pt::record("Seq2Seq", {{"encoder", enc}, {"decoder", dec}}),
///                        ".decoder.embed", ".encoder.embed");
///     auto tuned = pt::tree_map([](const pt::tree& x) { return pt::tree(x.as_array() * 3.0); },
///                               pt::extract(m, ".decoder"));   // trained on its own
///     auto back = pt::graft(m, ".decoder", tuned);     // the tie to the encoder kept
///     assert(pt::structure(back) == pt::structure(m));
///     assert(pt::expand(back)["encoder"]["embed"].as_array().item(0) == 3);
template <where_spec W>
[[nodiscard]] tree graft(const tree& t, const W& where, const tree& sub) {
    return detail::graft_at(t, detail::resolve_where(where, t), sub);
}

} // namespace paramtree
