// expect: f must return pt::array or std::pair<pt::array, pt::tree>
// A loss that returns a plain double cannot be differentiated: a compile error that says what
// `f` must return, not a failure deep in the tape.
#include <paramtree/autodiff.hpp>

namespace pt = paramtree;

int main() {
    const auto vg = pt::value_and_grad([](const pt::tree&) { return 1.0; });
    (void)vg(pt::tree(pt::array::ones({2})));
}
