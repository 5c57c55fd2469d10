// paramtree — ravel / unravel.
#include <paramtree/detail/errors.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/partition.hpp>
#include <paramtree/ravel.hpp>

#include <fmt/format.h>

namespace paramtree {

namespace {
template <class Out, class In>
void copy_cast(std::span<const In> in, Out* out) {
    for (std::size_t i = 0; i < in.size(); ++i)
        out[i] = static_cast<Out>(in[i]);
}
template <class Out>
void copy_leaf(const array& a, Out* out) {
    if (a.dtype() == dtype::float32)
        copy_cast(a.values<float>(), out);
    else
        copy_cast(a.values<double>(), out);
}
} // namespace

unravel_fn::unravel_fn(treedef def, std::vector<tree> leaves, std::vector<std::size_t> float_slots,
                       std::size_t total)
    : def_(std::move(def)), leaves_(std::move(leaves)), float_slots_(std::move(float_slots)),
      total_(total) {}

raveled ravel(const tree& t) {
    flat_tree flattened = flatten(t); // named, not bound: clang 14 cannot capture bindings
    auto& leaves = flattened.leaves;
    auto& def = flattened.def;
    std::vector<std::size_t> slots;
    std::size_t total = 0;
    bool any_f64 = false;
    for (std::size_t i = 0; i < leaves.size(); ++i) {
        if (!is_float_array(leaves[i])) continue;
        slots.push_back(i);
        total += leaves[i].as_array().size();
        any_f64 = any_f64 || leaves[i].as_array().dtype() == dtype::float64;
    }
    auto fill = [&](auto* out) {
        for (const auto s : slots) {
            const auto& a = leaves[s].as_array();
            copy_leaf(a, out);
            out += a.size();
        }
    };
    array flat = any_f64
                     ? array::build<double>({total}, [&](std::span<double> o) { fill(o.data()); })
                     : array::build<float>({total}, [&](std::span<float> o) { fill(o.data()); });
    return {std::move(flat),
            unravel_fn(std::move(def), std::move(leaves), std::move(slots), total)};
}

tree unravel_fn::operator()(const array& flat) const {
    if (!is_inexact(flat.dtype()))
        detail::throw_leaf("unravel", {}, "a float32 or float64 vector", flat.describe());
    if (flat.ndim() != 1 || flat.size() != total_)
        detail::throw_shape("unravel", fmt::format("a 1-d vector of {} elements", total_),
                            flat.describe());
    std::vector<tree> out = leaves_;
    std::size_t offset = 0;
    for (const auto s : float_slots_) {
        const auto& old = leaves_[s].as_array();
        const std::size_t n = old.size();
        auto read = [&](auto* dst) {
            if (flat.dtype() == dtype::float32)
                copy_cast(flat.values<float>().subspan(offset, n), dst);
            else
                copy_cast(flat.values<double>().subspan(offset, n), dst);
        };
        if (old.dtype() == dtype::float32)
            out[s] = array::build<float>(old.shape(), [&](std::span<float> o) { read(o.data()); });
        else
            out[s] =
                array::build<double>(old.shape(), [&](std::span<double> o) { read(o.data()); });
        offset += n;
    }
    return unflatten(def_, std::move(out));
}

} // namespace paramtree
