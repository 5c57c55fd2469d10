// paramtree — the sharing metadata (see <paramtree/detail/sharing.hpp>): equality and text of
// tie placeholders, and the transform chains a tie applies to its source (and inverts when a
// value is written through it).
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/sharing.hpp>
#include <paramtree/map.hpp>
#include <paramtree/transform.hpp>

#include <fmt/format.h>

namespace paramtree::detail {

bool tie_meta_equal(const tie_meta& a, const tie_meta& b) {
    if (a.fn || b.fn) return a.fn == b.fn; // callables compare by identity
    return a.source == b.source && a.transforms == b.transforms;
}

bool shared_meta_equal(const shared_meta& a, const shared_meta& b) {
    return a.tags == b.tags;
}

std::string tie_text(const tie_meta& m) {
    if (m.fn) return fmt::format("@{}()", m.fn_name.empty() ? "get" : m.fn_name);
    std::string src = dotted(m.source);
    return fmt::format("@{}{}", src.empty() ? "<root>" : src, to_string(m.transforms));
}

std::vector<shape_type> chain_shapes(const shape_type& shape, const std::vector<transform>& chain) {
    std::vector<shape_type> shapes{shape};
    shapes.reserve(chain.size() + 1);
    for (const auto& t : chain)
        shapes.push_back(t.output_shape(shapes.back()));
    return shapes;
}

tree apply_chain(const tree& v, const std::vector<transform>& chain) {
    if (chain.empty()) return v;
    if (v.is_array()) {
        array a = v.as_array();
        for (const auto& t : chain)
            a = t.apply(a);
        return a;
    }
    return tree_map([&](const tree& leaf) { return apply_chain(leaf, chain); }, v);
}

tree invert_chain(const tree& v, const std::vector<transform>& chain, const tree& source) {
    if (chain.empty()) return v;
    if (v.is_array() && source.is_array()) {
        const auto shapes = chain_shapes(source.as_array().shape(), chain);
        array a = v.as_array();
        for (std::size_t k = chain.size(); k-- > 0;)
            a = chain[k].inverse(a, shapes[k]);
        return a;
    }
    if (v.is_array() || source.is_array())
        throw_sharing("tree_at", {}, "an array for a position tied through " + to_string(chain),
                      describe(v));
    return tree_map([&](const tree& x, const tree& s) { return invert_chain(x, chain, s); }, v,
                    source);
}

} // namespace paramtree::detail
