// expect: remat: f must return pt::array or pt::tree
// remat can only record functions whose results are arrays or trees.
#include <paramtree/remat.hpp>

namespace pt = paramtree;

int main() {
    const auto f = pt::remat([](const pt::array&) { return 3; });
    (void)f(pt::array::ones({2}));
}
