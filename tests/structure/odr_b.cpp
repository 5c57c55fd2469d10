// The second unit of the ODR check (see odr_a.cpp); runs code from both units.
#include <paramtree/paramtree.hpp>

#include <iostream>

namespace pt = paramtree;

pt::tree odr_tree_from_a();

int main() {
    const pt::tree a = odr_tree_from_a();
    const pt::tree b = pt::dict({{"w", pt::array::ones({2})}});
    if (!pt::tree_equal(a, b)) {
        std::cerr << "the two units disagree\n";
        return 1;
    }
    std::cout << "two units including every header link and agree\n";
    return 0;
}
