// paramtree — internal: the tree-structure codec kept in a checkpoint's header
// (`paramtree.structure`), and bounded JSON parsing of header metadata.
//
// Format 3 (written now) is a flat pre-order list of nodes, each naming its arity:
// `{"version":3,"nodes":[{"k":"record","name":"pt.nn.Linear","fields":["weight","bias"],
// "statics":[...]},{"k":"array","name":"weight"},...]}`. A tie is only marked in the list
// (`{"k":"tied"}`): it is stored once, in `paramtree.ties`, under its position's tensor name.
// The JSON is a few levels deep whatever the tree's depth, and both directions are loops with
// explicit stacks, so a tree as deep as the format allows saves and loads on a 512 KiB thread
// stack. Format 2 (the same list with each tie inside its node) and format 1 (nested objects,
// written by 0.1; flattened iteratively first) are still read.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <paramtree/array.hpp>
#include <paramtree/tree.hpp>

namespace paramtree::detail {

/// How deep a saved tree may be (nodes on a root-to-leaf chain).
inline constexpr std::size_t max_structure_depth = 4096;

/// The structure text, the arrays it names (in pre-order) and its ties (`paramtree.ties`).
struct encoded_structure {
    std::string text;
    std::vector<std::pair<std::string, array>> tensors;
    std::string ties; // {"tied name": {"source": name, "transforms": [...], "from": path}}
};

/// One walk over `t`: its structure (format 2) and its array leaves with their tensor names
/// (dotted key paths). Throws format_error for a name that is taken, contains a control
/// character or is `__metadata__`, or a tree deeper than `max_structure_depth`;
/// sharing_error for a tie through a callable get. `context` names the file in messages.
[[nodiscard]] encoded_structure encode_structure(const tree& t, const std::string& context);

/// The tree `text` describes; `tensor(name)` supplies each array (and throws format_error if
/// there is none), `ties` is the header's parsed paramtree.ties object (format 3 keeps ties
/// there; pass an empty object when there is none). Every problem is a format_error naming
/// the path and `context`.
[[nodiscard]] tree decode_structure(const std::string& text,
                                    const std::function<array(const std::string&)>& tensor,
                                    const nlohmann::json& ties, const std::string& context);

/// The tensor name of a position: its dotted key path, `__root__` for the root.
[[nodiscard]] std::string tensor_name(const path& p);

/// `name` is usable as a tensor name: no C0 control character or DEL (a NUL would make two
/// names look equal to a C-string consumer), not `__metadata__`.
[[nodiscard]] bool valid_tensor_name(std::string_view name) noexcept;

/// Parses header metadata text (JSON) with a nesting bound; nullopt-like discarded value for
/// invalid or too deeply nested text. Never recurses in the depth of the text.
[[nodiscard]] nlohmann::json parse_bounded(std::string_view text, int max_depth,
                                           bool* too_deep = nullptr);

/// What a JSON value is, for messages, without serialising it (a value may be huge or deeply
/// nested): `an object with keys "k", "c"`, `a string "abc..."`, `an array of 3`.
[[nodiscard]] std::string describe_json(const nlohmann::json& j);

} // namespace paramtree::detail
