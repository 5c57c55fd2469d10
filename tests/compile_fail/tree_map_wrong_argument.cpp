// expect: tree_map
// tree_map's function must take trees: one taking an int is refused by its constraint, at
// the call, not inside the traversal.
#include <paramtree/map.hpp>

namespace pt = paramtree;

int main() {
    const pt::tree t = pt::dict({{"a", pt::array::ones({2})}});
    (void)pt::tree_map([](int x) { return x; }, t);
}
