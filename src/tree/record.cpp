// paramtree — records as C++ structs (see <paramtree/record.hpp>): the error a decode raises.
#include <paramtree/detail/errors.hpp>
#include <paramtree/record.hpp>

namespace paramtree::detail {

void throw_decode(const path& p, std::string expected, const tree& found) {
    throw_structure("from_tree", p, std::move(expected), describe(found));
}

} // namespace paramtree::detail
