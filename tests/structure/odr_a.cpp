// Two translation units that include every public header, linked into one program: a
// non-inline definition in a header would be defined twice and fail the link.
#include <paramtree/paramtree.hpp>

namespace pt = paramtree;

pt::tree odr_tree_from_a() {
    return pt::dict({{"w", pt::array::ones({2})}});
}
