// paramtree — static field values (see <paramtree/static_value.hpp>).
#include <paramtree/static_value.hpp>

#include <fmt/format.h>

namespace paramtree {

std::string static_value::to_string() const {
    return std::visit(
        [](const auto& x) -> std::string {
            using X = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<X, std::string>)
                return "'" + x + "'";
            else
                return fmt::format("{}", x);
        },
        value_);
}

} // namespace paramtree
