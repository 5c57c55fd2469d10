// expect: custom_vjp
// A custom op's inputs are arrays: calling it with a tree is refused at compile time.
#include <paramtree/custom_vjp.hpp>

namespace pt = paramtree;

int main() {
    const auto op = pt::custom_vjp(
        "identity", [](const pt::array& x) { return x; }, [](const pt::array& g) { return g; });
    (void)op(pt::tree(pt::array::ones({2})));
}
