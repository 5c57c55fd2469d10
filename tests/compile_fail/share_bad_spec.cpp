// expect: share
// `where` and `get` are paths, path strings, selectors or sources: a number is neither.
#include <paramtree/shared.hpp>

namespace pt = paramtree;

int main() {
    const pt::tree t = pt::dict({{"a", pt::array::ones({2})}, {"b", pt::array::ones({2})}});
    (void)pt::share(t, 42, 7);
}
