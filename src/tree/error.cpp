// paramtree — exception types and the cold throw helpers.
#include <paramtree/detail/errors.hpp>
#include <paramtree/error.hpp>

#include <fmt/format.h>

namespace paramtree {

namespace {
std::string compose(const std::string& context, const std::string& path,
                    const std::string& expected, const std::string& found) {
    std::string msg = context;
    msg += fmt::format(": at {}", display_path(path));
    if (!expected.empty()) msg += fmt::format(": expected {}", expected);
    if (!found.empty()) msg += fmt::format(", found {}", found);
    return msg;
}
} // namespace

std::string display_path(const std::string& keystr) {
    return keystr.empty() ? "<root>" : keystr;
}

error::error(std::string context, std::string path, std::string expected, std::string found)
    : std::runtime_error(compose(context, path, expected, found)), context_(std::move(context)),
      path_(std::move(path)), expected_(std::move(expected)), found_(std::move(found)) {}

error::error(std::string context, paramtree::path where, std::string expected, std::string found)
    : error(std::move(context), keystr(where), std::move(expected), std::move(found)) {
    where_ = std::move(where);
}

error::error(unlocated_t, std::string context, std::string expected, std::string found)
    : std::runtime_error(fmt::format("{}: expected {}, found {}", context, expected, found)),
      context_(std::move(context)), expected_(std::move(expected)), found_(std::move(found)) {}

namespace detail {

namespace {
/// Throws `e` again as its own class, with `context` and the place `make(E)` gives it.
template <class Make>
[[noreturn]] void rethrow_same_class(const error& e, Make&& make) {
    // Most derived first; every class paramtree throws is listed (error.hpp).
    const auto again = [&]<class E>(const E*) { throw make(static_cast<const E*>(nullptr)); };
    if (const auto* x = dynamic_cast<const structure_error*>(&e)) again(x);
    if (const auto* x = dynamic_cast<const path_error*>(&e)) again(x);
    if (const auto* x = dynamic_cast<const leaf_count_error*>(&e)) again(x);
    if (const auto* x = dynamic_cast<const leaf_error*>(&e)) again(x);
    if (const auto* x = dynamic_cast<const shape_error*>(&e)) again(x);
    if (const auto* x = dynamic_cast<const sharing_error*>(&e)) again(x);
    if (const auto* x = dynamic_cast<const format_error*>(&e)) again(x);
    if (const auto* x = dynamic_cast<const io_error*>(&e)) again(x);
    if (const auto* x = dynamic_cast<const value_error*>(&e)) again(x);
    if (const auto* x = dynamic_cast<const internal_error*>(&e)) again(x);
    throw make(static_cast<const error*>(nullptr));
}
} // namespace

void rethrow_as(const error& e, std::string context, const path& where) {
    rethrow_same_class(e, [&]<class E>(const E*) {
        return E(std::move(context), where, e.expected(), e.found());
    });
}

void rethrow_as(const error& e, std::string context) {
    rethrow_same_class(e, [&]<class E>(const E*) {
        return e.where() ? E(std::move(context), *e.where(), e.expected(), e.found())
                         : E(std::move(context), e.path(), e.expected(), e.found());
    });
}

void throw_structure(std::string context, const path& p, std::string expected, std::string found) {
    throw structure_error(std::move(context), p, std::move(expected), std::move(found));
}
void throw_path(std::string context, const path& p, std::string expected, std::string found) {
    throw path_error(std::move(context), p, std::move(expected), std::move(found));
}
void throw_leaf(std::string context, const path& p, std::string expected, std::string found) {
    throw leaf_error(std::move(context), p, std::move(expected), std::move(found));
}
void throw_leaf_count(std::string context, std::size_t expected, std::size_t found) {
    throw leaf_count_error(std::move(context), "", fmt::format("{} leaves", expected),
                           fmt::format("{}", found));
}
void throw_shape(std::string context, std::string expected, std::string found) {
    throw shape_error(std::move(context), "", std::move(expected), std::move(found));
}
void throw_sharing(std::string context, const path& p, std::string expected, std::string found) {
    throw sharing_error(std::move(context), p, std::move(expected), std::move(found));
}
void throw_value(std::string context, const path& p, std::string expected, std::string found) {
    throw value_error(std::move(context), p, std::move(expected), std::move(found));
}
void throw_internal(std::string what, std::string found, const char* file_name, int line) {
    // The file as compiled (a build path): the part from src/ or include/ on is what matters.
    std::string_view file = file_name;
    for (const std::string_view root : {"src/", "include/"})
        if (const auto at = file.rfind(root); at != std::string_view::npos) {
            file.remove_prefix(at);
            break;
        }
    throw internal_error(
        fmt::format("paramtree internal error at {}:{} (please report it)", file, line), "",
        std::move(what), std::move(found));
}

} // namespace detail
} // namespace paramtree
