// paramtree — trees as ranges (see <paramtree/ranges.hpp>).
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/sharing.hpp>
#include <paramtree/detail/walk.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/ranges.hpp>
#include <paramtree/shared.hpp>
#include <paramtree/treedef.hpp>

namespace paramtree::views {

const array& leaf_ref::as_array() const {
    if (const auto* a = std::get_if<array>(&n_->value)) return *a;
    detail::throw_leaf("views::leaf_ref", {}, "an array leaf", detail::describe(*n_));
}

tree leaf_ref::get() const {
    return tree(detail::node_ptr::share(n_));
}

tree node_ref::get() const {
    if (scope_ == nullptr) return tree(detail::node_ptr::share(n_));
    // The sub-model of the innermost Shared node at this node's path: one resolver for
    // tree::at and the views, so the two cannot disagree on a tie.
    return detail::sub_model(tree(detail::node_ptr::share(scope_)), from_scope_, false,
                             "views::nodes");
}

std::string_view node_ref::record_name() const noexcept {
    return tree(detail::node_ptr::share(n_)).record_name();
}

std::string node_ref::describe() const {
    return detail::describe(*n_);
}

leaves_view leaves(tree t) {
    return leaves_view(std::move(t));
}
leaves_with_path_view leaves_with_path(tree t) {
    return leaves_with_path_view(std::move(t));
}
arrays_view arrays(tree t) {
    return arrays_view(std::move(t));
}
float_arrays_view float_arrays(tree t) {
    return float_arrays_view(std::move(t));
}
nodes_view nodes(tree t) {
    return nodes_view(std::move(t));
}
leaves_view leaves_expanded(const tree& t) {
    return leaves_view(expand(t));
}

namespace detail_views {
void check_same_structure(std::initializer_list<const tree*> trees) {
    const tree* first = *trees.begin();
    const treedef expected = structure(*first);
    std::size_t k = 0;
    for (const tree* t : trees) {
        if (k++ == 0) continue;
        const treedef found = structure(*t);
        if (!(found == expected))
            detail::throw_structure_mismatch("zip_leaves", expected, found, k - 1);
    }
}
} // namespace detail_views

} // namespace paramtree::views
