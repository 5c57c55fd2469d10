// paramtree — tree_at: out-of-place surgery on a persistent tree.
// Only the nodes on the touched paths are copied; every other subtree is shared with the
// input, so the cost grows with depth and node widths along those paths, not with tree size.
#pragma once

#include <concepts>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <paramtree/error.hpp>
#include <paramtree/detail/subscript.hpp>
#include <paramtree/path.hpp>
#include <paramtree/pattern.hpp>
#include <paramtree/tree.hpp>

namespace paramtree {

/// A checked cursor into a tree used by `where` callables: `s["layers"][3]["weight"]`
/// records the path while validating every step against the tree (O(depth)).
class selector : public detail::subscript_sugar<selector, selector> {
public:
    explicit selector(const tree& t) : node_(t) {}

    /// Element `i` of a list or tuple (any integer type). Throws path_error.
    [[nodiscard]] selector operator[](std::size_t i) const;
    /// Dict entry or record field `name` (a string literal too). Throws path_error.
    [[nodiscard]] selector operator[](std::string_view name) const;
    using detail::subscript_sugar<selector, selector>::operator[];
    /// Follows a whole path.
    [[nodiscard]] selector operator[](const path& p) const;

    [[nodiscard]] const paramtree::path& path() const noexcept { return path_; }
    [[nodiscard]] const tree& value() const noexcept { return node_; }

private:
    selector(tree t, paramtree::path p) : node_(std::move(t)), path_(std::move(p)) {}
    tree node_;
    paramtree::path path_;
};

/// What `where` may be: one path, several paths, path text as `parse_path` reads it (one
/// string or a vector of them: `"['embed'].weight"`, `"layers.0.weight"`), a path pattern
/// (every position it matches, in flatten order, as `expand_pattern` lists them), or a
/// callable taking a selector and returning a selector or a vector of selectors.
template <class W>
concept where_spec =
    std::same_as<std::decay_t<W>, path> || std::same_as<std::decay_t<W>, std::vector<path>> ||
    std::same_as<std::decay_t<W>, pattern> || std::convertible_to<const W&, std::string_view> ||
    std::same_as<std::decay_t<W>, std::vector<std::string>> || std::invocable<const W&, selector>;

namespace detail {
/// `paths` with each entry spelled as `t` spells it (see canonical_path in detail/walk.hpp):
/// a dotted name's field entry that names a dict key becomes that dict key.
[[nodiscard]] std::vector<path> canonical_paths(const tree& t, std::vector<path> paths);

template <class W>
std::vector<path> resolve_where(const W& where, const tree& t) {
    if constexpr (std::same_as<std::decay_t<W>, path>) {
        return canonical_paths(t, {where});
    } else if constexpr (std::same_as<std::decay_t<W>, pattern>) {
        return expand_pattern(t, where); // spelled as the tree spells them already
    } else if constexpr (std::same_as<std::decay_t<W>, std::vector<path>>) {
        return canonical_paths(t, where);
    } else if constexpr (std::convertible_to<const W&, std::string_view>) {
        return canonical_paths(t, {parse_path(std::string_view(where))});
    } else if constexpr (std::same_as<std::decay_t<W>, std::vector<std::string>>) {
        std::vector<path> out;
        out.reserve(where.size());
        for (const auto& text : where)
            out.push_back(parse_path(text));
        return canonical_paths(t, std::move(out));
    } else {
        const auto picked = std::invoke(where, selector(t));
        if constexpr (std::same_as<std::decay_t<decltype(picked)>, selector>) {
            return {picked.path()};
        } else {
            std::vector<path> out;
            for (const auto& s : picked)
                out.push_back(s.path());
            return out;
        }
    }
}
/// Rebuilds `t` with the node at each of `paths` replaced by `replace(i, old)`. A path that
/// reaches a tied position is redirected to the tie's source unless `through_ties` is false.
[[nodiscard]] tree tree_at_paths(const tree& t, std::span<const path> paths,
                                 const std::function<tree(std::size_t, const tree&)>& replace,
                                 bool through_ties = true);
/// tree_at_paths' rebuild alone, for a caller that has checked `paths` itself: each exists,
/// none contains another, and no tie is to be followed (share, which resolved and sorted them
/// once already). `order` is the paths' indices in sorted path order.
[[nodiscard]] tree rebuild_at_sorted(const tree& t, std::span<const path> paths,
                                     std::span<const std::size_t> order,
                                     const std::function<tree(std::size_t, const tree&)>& replace);
} // namespace detail

/// The paths `where` selects in `t`, validated (each exists). Throws path_error.
template <where_spec W>
[[nodiscard]] std::vector<path> select(const W& where, const tree& t) {
    auto paths = detail::resolve_where(where, t);
    for (const auto& p : paths)
        (void)t.at(p);
    return paths;
}

/// `t` with every node `where` selects replaced by `value`; all other subtrees are shared.
/// Throws path_error if a path does not exist, is selected twice, or lies inside another.
///
///     auto t2 = pt::tree_at(pt::parse_path("['w']"), t, pt::array::zeros({3}));
///     auto t3 = pt::tree_at([](pt::selector s) { return s["layers"][0]["bias"]; }, t, 0.0);
template <where_spec W>
[[nodiscard]] tree tree_at(const W& where, const tree& t, const tree& value) {
    const auto paths = detail::resolve_where(where, t);
    return detail::tree_at_paths(t, paths, [&](std::size_t, const tree&) { return value; });
}

/// `t` with the i-th selected node replaced by `values[i]`. Throws path_error on a count mismatch.
template <where_spec W>
[[nodiscard]] tree tree_at(const W& where, const tree& t, const std::vector<tree>& values) {
    const auto paths = detail::resolve_where(where, t);
    if (paths.size() != values.size())
        throw path_error("tree_at", "", std::to_string(paths.size()) + " replacement values",
                         std::to_string(values.size()));
    return detail::tree_at_paths(t, paths, [&](std::size_t i, const tree&) { return values[i]; });
}

/// `t` with every selected node `n` replaced by `fn(n)`.
///
///     auto t4 = pt::tree_at(pt::parse_path("['step']"), t, [](const pt::tree& old) {
///         return old.as<std::int64_t>() + 1; });
// clang-format off
template <where_spec W, class F>
    requires std::invocable<F&, const tree&> && (!std::convertible_to<F, tree>)
[[nodiscard]] tree tree_at(const W& where, const tree& t, F&& fn) {
    // clang-format on
    const auto paths = detail::resolve_where(where, t);
    return detail::tree_at_paths(t, paths,
                                 [&](std::size_t, const tree& old) { return tree(fn(old)); });
}

} // namespace paramtree
