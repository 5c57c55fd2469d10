// paramtree — internal: cold, out-of-line throw helpers, so hot loops stay small.
#pragma once

#include <string>

#include <paramtree/error.hpp>
#include <paramtree/path.hpp>

namespace paramtree::detail {

[[noreturn]] void throw_structure(std::string context, const path& p, std::string expected,
                                  std::string found);
[[noreturn]] void throw_path(std::string context, const path& p, std::string expected,
                             std::string found);
[[noreturn]] void throw_leaf(std::string context, const path& p, std::string expected,
                             std::string found);
[[noreturn]] void throw_leaf_count(std::string context, std::size_t expected, std::size_t found);
[[noreturn]] void throw_shape(std::string context, std::string expected, std::string found);
[[noreturn]] void throw_sharing(std::string context, const path& p, std::string expected,
                                std::string found);
[[noreturn]] void throw_value(std::string context, const path& p, std::string expected,
                              std::string found);
/// Throws internal_error: `what` (an invariant, "record metadata on a record node") did not
/// hold at the caller's file and line.
[[noreturn]] void throw_internal(std::string what, std::string found,
                                 const char* file = __builtin_FILE(), int line = __builtin_LINE());
/// Throws an error of the dynamic type of `e` with another context and place, the same
/// expected and found.
[[noreturn]] void rethrow_as(const error& e, std::string context, const path& where);
/// The same keeping `e`'s place (its path object when it has one).
[[noreturn]] void rethrow_as(const error& e, std::string context);

} // namespace paramtree::detail
