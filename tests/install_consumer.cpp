// A program built against the *installed* paramtree through pkg-config (tests/install_consumer.sh).
#include <paramtree/paramtree.hpp>

#include <iostream>

int main() {
    namespace pt = paramtree;
    const pt::tree t = pt::dict({{"w", pt::array::ones({2, 2})}, {"b", 0.5}});
    auto [leaves, def] = pt::flatten(t);
    const auto back = pt::unflatten(def, leaves);
    const bool ok = leaves.size() == 2 && pt::tree_equal(back, t) &&
                    pt::to_string(back) == "{'w': f32[2,2], 'b': 0.5}";
    std::cout << (ok ? "installed paramtree works\n" : "installed paramtree is broken\n");
    return ok ? 0 : 1;
}
