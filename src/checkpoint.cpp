// paramtree — checkpoints: safetensors writing (atomic) and reading (mmap, every byte
// validated), the tree-structure codec kept in the header, and .npy files.
#include <paramtree/at.hpp>
#include <paramtree/checkpoint.hpp>
#include <paramtree/detail/array_impl.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/file_io.hpp>
#include <paramtree/detail/node.hpp>
#include <paramtree/detail/sharing.hpp>
#include "checkpoint_shards.hpp"
#include "structure_codec.hpp"
#include <paramtree/error.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/shared.hpp>
#include <paramtree/transform.hpp>
#include <paramtree/treedef.hpp>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

namespace paramtree {

static_assert(std::endian::native == std::endian::little,
              "safetensors and .npy data are little-endian; paramtree reads them in place");

namespace {

using json = nlohmann::json;

constexpr std::size_t max_header = 100'000'000; // as the reference implementation
constexpr const char* structure_key = "paramtree.structure";
constexpr const char* ties_key = "paramtree.ties";

// ---- errors ---------------------------------------------------------------------------------

[[noreturn]] void bad_file(const std::string& source, const std::string& where,
                           std::string expected, std::string found) {
    throw format_error("safetensors " + source, where, std::move(expected), std::move(found));
}

using detail::atomic_write;
using detail::describe_json;
using detail::tensor_name;
using detail::write_all;

// ---- dtypes ---------------------------------------------------------------------------------

std::string_view st_dtype(dtype d) {
    return info(d).safetensors;
}

dtype parse_st_dtype(const std::string& source, const std::string& name, const std::string& s) {
    for (const auto& n : dtype_table())
        if (s == n.safetensors) return n.type;
    static constexpr std::string_view other[] = {"F16", "BF16", "F8_E4M3", "F8_E5M2", "I8", "U8",
                                                 "I16", "U16",  "U32",     "U64",     "C64"};
    const bool known = std::find(std::begin(other), std::end(other), s) != std::end(other);
    bad_file(source, name, "dtype F32, F64, I32, I64 or BOOL",
             known ? fmt::format("{} (a safetensors dtype paramtree does not hold)", s)
                   : fmt::format("unknown dtype '{}'", s));
}

// ---- reading --------------------------------------------------------------------------------

struct st_tensor {
    std::string name;
    dtype dt = dtype::float32;
    shape_type shape;
    std::size_t begin = 0, end = 0;
};

struct st_file {
    std::string source;             // the file name, for messages
    std::vector<st_tensor> tensors; // in offset order
    std::map<std::string, std::string> metadata;
    bool has_metadata = false;
    const std::byte* data = nullptr;
    std::size_t data_size = 0;
    std::shared_ptr<const void> owner; // keeps `data` alive
};

std::size_t as_size(const std::string& source, const std::string& name, const json& v,
                    const char* what) {
    if (!v.is_number_unsigned())
        bad_file(source, name, fmt::format("a non-negative integer {}", what),
                 v.is_number_integer() ? fmt::format("{}", v.get<std::int64_t>())
                                       : std::string(v.type_name()));
    return v.get<std::uint64_t>();
}

/// One tensor's header entry, checked: a known dtype, a shape whose byte size fits, offsets
/// spanning exactly those bytes within the data section.
st_tensor parse_tensor(const st_file& f, const std::string& name, const json& v) {
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
        !v.contains("data_offsets") || !v["dtype"].is_string() || !v["shape"].is_array() ||
        !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
        bad_file(f.source, name,
                 "{\"dtype\": ..., \"shape\": [...], \"data_offsets\": [begin, end]}",
                 describe_json(v));
    st_tensor t;
    t.name = name;
    t.dt = parse_st_dtype(f.source, name, v["dtype"].get<std::string>());
    std::size_t bytes_needed = dtype_size(t.dt);
    for (const auto& e : v["shape"]) {
        const std::size_t d = as_size(f.source, name, e, "extent");
        t.shape.push_back(d);
        if (d != 0 && bytes_needed > std::numeric_limits<std::size_t>::max() / d)
            bad_file(f.source, name, "a shape whose byte size fits in 64 bits",
                     fmt::format("an extent of {} after {} bytes", d, bytes_needed));
        bytes_needed *= d;
    }
    t.begin = as_size(f.source, name, v["data_offsets"][0], "offset");
    t.end = as_size(f.source, name, v["data_offsets"][1], "offset");
    if (t.begin > t.end || t.end - t.begin != bytes_needed)
        bad_file(f.source, name,
                 fmt::format("data_offsets spanning {} bytes ({})", bytes_needed,
                             describe(t.dt, t.shape)),
                 fmt::format("[{}, {}]", t.begin, t.end));
    if (t.end > f.data_size)
        bad_file(f.source, name,
                 fmt::format("data within the {} bytes after the header", f.data_size),
                 fmt::format("[{}, {}]", t.begin, t.end));
    return t;
}

st_file parse(std::span<const std::byte> bytes, std::shared_ptr<const void> owner,
              std::string source) {
    st_file f;
    f.source = std::move(source);
    f.owner = std::move(owner);
    if (bytes.size() < 8)
        bad_file(f.source, "", "at least 8 bytes (the header length)",
                 fmt::format("{} bytes", bytes.size()));
    std::uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8); // little-endian host (static_assert above)
    if (n > max_header)
        bad_file(f.source, "", fmt::format("a header of at most {} bytes", max_header),
                 fmt::format("a header length of {}", n));
    if (n > bytes.size() - 8)
        bad_file(f.source, "", "a header length within the file",
                 fmt::format("{} header bytes in a file of {} bytes", n, bytes.size()));
    const auto* text = reinterpret_cast<const char*>(bytes.data() + 8);
    // The header starts with '{' (as the reference implementation requires): no BOM, no
    // leading white space, so one file cannot be read two ways.
    if (n == 0 || text[0] != '{')
        bad_file(f.source, "", "a header starting with '{'",
                 n == 0 ? std::string("an empty header")
                        : fmt::format("the byte 0x{:02x}", static_cast<unsigned char>(text[0])));
    // Duplicate names are invalid, but a JSON object keeps only one of them: catch them while
    // parsing. Nothing in a valid header is nested more than three levels deep.
    std::string duplicate;
    bool too_deep = false;
    std::set<std::string> seen;
    const json::parser_callback_t watch = [&](int depth, json::parse_event_t event, json& parsed) {
        if (depth > 4) {
            too_deep = true;
            return false;
        }
        if (event == json::parse_event_t::key && depth == 1) {
            const auto& key = parsed.get_ref<const std::string&>();
            if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
        }
        return true;
    };
    const json header = json::parse(text, text + n, watch, false);
    if (header.is_discarded() || !header.is_object())
        bad_file(f.source, "", "a JSON object as header", "invalid JSON");
    if (too_deep) bad_file(f.source, "", "a header nested at most 4 levels", "deeper nesting");
    if (!duplicate.empty()) bad_file(f.source, duplicate, "distinct tensor names", "a duplicate");
    f.data = bytes.data() + 8 + n;
    f.data_size = bytes.size() - 8 - n;

    for (const auto& [name, v] : header.items()) {
        if (name != "__metadata__" && !detail::valid_tensor_name(name))
            bad_file(f.source, detail::escaped(name), "a tensor name without control characters",
                     fmt::format("'{}'", detail::escaped(name)));
        if (name == "__metadata__") {
            if (!v.is_object())
                bad_file(f.source, name, "an object of strings", std::string(v.type_name()));
            for (const auto& [k, s] : v.items()) {
                if (!s.is_string())
                    bad_file(f.source, "__metadata__." + detail::escaped(k), "a string",
                             describe_json(s));
                f.metadata[k] = s.get<std::string>();
            }
            f.has_metadata = true;
            continue;
        }
        f.tensors.push_back(parse_tensor(f, name, v));
    }
    // The data section is covered exactly once: no overlap, no hole (as the format requires,
    // so no file is also something else).
    std::sort(f.tensors.begin(), f.tensors.end(), [](const st_tensor& a, const st_tensor& b) {
        return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
    });
    std::size_t covered = 0;
    for (const auto& t : f.tensors) {
        if (t.begin != covered)
            bad_file(f.source, t.name, fmt::format("data starting at byte {}", covered),
                     fmt::format("[{}, {}] ({})", t.begin, t.end,
                                 t.begin < covered ? "overlapping the tensor before"
                                                   : "a hole before it"));
        covered = t.end;
    }
    if (covered != f.data_size)
        bad_file(f.source, "", fmt::format("tensors covering all {} data bytes", f.data_size),
                 fmt::format("{} bytes covered", covered));
    return f;
}

/// The tensor as an array: zero-copy on the file's memory when it is aligned for its dtype,
/// else copied into an aligned buffer. Bool bytes must be 0 or 1.
array tensor_array(const st_file& f, const st_tensor& t) {
    const std::byte* p = f.data + t.begin;
    const std::size_t nbytes = t.end - t.begin;
    if (t.dt == dtype::boolean)
        for (std::size_t i = 0; i < nbytes; ++i)
            if (static_cast<unsigned char>(p[i]) > 1)
                bad_file(f.source, t.name, "bool bytes 0 or 1",
                         fmt::format("{} at element {}", static_cast<unsigned>(p[i]), i));
    std::size_t count = 1;
    for (const auto e : t.shape)
        count *= e;
    // An empty tensor gets a buffer of its own: two of them at one offset would otherwise look
    // like one buffer (same_storage), and share_aliases would tie them.
    if (f.owner && nbytes != 0 && reinterpret_cast<std::uintptr_t>(p) % dtype_size(t.dt) == 0)
        return array::from_owner(t.dt, t.shape, count, p, f.owner);
    auto a_buf = detail::array_access::allocate(t.dt, t.shape);
    array a = std::move(a_buf.first);
    void* buf = a_buf.second; // named: clang 14 cannot capture bindings
    if (nbytes != 0) std::memcpy(buf, p, nbytes);
    return a;
}

st_file open_file(const std::filesystem::path& file, load_memory memory) {
    auto m = memory == load_memory::map ? detail::map_file(file) : detail::read_file(file);
    return parse(m.bytes, std::move(m.owner), file.string());
}

st_file open_bytes(std::span<const std::byte> bytes) {
    // The arrays must outlive the caller's bytes: one owned, aligned copy.
    auto buffer = std::make_shared<std::vector<std::max_align_t>>(
        (bytes.size() + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t));
    if (!bytes.empty()) std::memcpy(buffer->data(), bytes.data(), bytes.size());
    const auto* p = reinterpret_cast<const std::byte*>(buffer->data());
    return parse({p, bytes.size()}, std::move(buffer), "<bytes>");
}

// ---- loading against a target ---------------------------------------------------------------

/// Everything wrong with a load, by tensor name, reported together in one format_error.
struct problem_list {
    std::vector<std::string> problems;
    std::string first_path;
    void operator()(const std::string& where, std::string what) {
        if (first_path.empty()) first_path = where;
        problems.push_back(where + ": " + std::move(what));
    }
    void throw_if_any(const std::string& source) {
        if (problems.empty()) return;
        // A resume into a model of another size can list hundreds: the first ten and a count.
        constexpr std::size_t shown = 10;
        const std::size_t total = problems.size();
        if (total > shown) problems.resize(shown);
        throw format_error(
            "load " + source, first_path, "a file matching the target",
            fmt::format(
                "{} problem{}: {}{}", total, total == 1 ? "" : "s", fmt::join(problems, "; "),
                total > shown ? fmt::format("; ... and {} more", total - shown) : std::string()));
    }
};

/// The ties a file written by paramtree records, tied name -> source name and transforms
/// (`enc.weight.T`); nullopt for a file without them (another tool's).
std::optional<std::map<std::string, std::string>> file_ties_of(const st_file& f) {
    const auto meta = f.metadata.find(ties_key);
    if (meta == f.metadata.end()) return std::nullopt;
    std::map<std::string, std::string> file_ties;
    // {"tied name": {"source": "name", "transforms": [".T"]}}: three levels.
    bool too_deep = false;
    const json j = detail::parse_bounded(meta->second, 3, &too_deep);
    if (j.is_discarded() || !j.is_object())
        bad_file(f.source, std::string("__metadata__.") + ties_key, "a JSON object",
                 too_deep ? "JSON nested deeper than 3 levels" : "invalid JSON");
    for (const auto& [tied, v] : j.items()) {
        if (!detail::valid_tensor_name(tied))
            bad_file(f.source, std::string("__metadata__.") + ties_key,
                     "tie names without control characters",
                     fmt::format("'{}'", detail::escaped(tied)));
        if (!v.is_object() || !v.contains("source") || !v["source"].is_string())
            bad_file(f.source, std::string("__metadata__.") + ties_key, "{source, transforms}",
                     describe_json(v));
        std::string text = v["source"].get<std::string>();
        if (v.contains("transforms") && v["transforms"].is_array())
            for (const auto& tr : v["transforms"])
                if (tr.is_string()) text += tr.get<std::string>();
        file_ties[tied] = std::move(text);
    }
    return file_ties;
}

/// The file's tensors by name (they are unique: the parser refuses duplicates).
std::map<std::string, const st_tensor*> tensors_by_name(const st_file& f) {
    std::map<std::string, const st_tensor*> out;
    for (const auto& t : f.tensors)
        out.emplace(t.name, &t);
    return out;
}

/// A file from another tool may hold a tied tensor under its own name too: true when `t` is
/// then a copy of the (transformed) source, or when that cannot be checked (the source
/// failed to load, or the tie's get is a callable).
bool is_copy_of_source(const st_file& f, const st_tensor& t, const tie_info& tie,
                       const std::map<std::string, array>& loaded) {
    const auto src = loaded.find(tensor_name(tie.source));
    if (src == loaded.end() || !tie.getter.empty()) return true;
    array expected = src->second;
    for (const auto& tr : tie.transforms)
        expected = tr.apply(expected);
    return t.dt == expected.dtype() && t.shape == expected.shape() &&
           array_equal(tensor_array(f, t), expected, 0, 0, /*equal_nan=*/true);
}

tree load_like(const st_file& f, const tree& like, const load_options& options) {
    const auto by_name = tensors_by_name(f);
    problem_list problem;
    std::set<std::string> used;

    auto [leaves, def] = flatten_with_path(like);
    std::vector<tree> out;
    out.reserve(leaves.size());
    std::map<std::string, array> loaded; // for checking duplicate copies of ties
    for (auto& [p, leaf] : leaves) {
        if (!leaf.is_array()) {
            out.push_back(leaf);
            continue;
        }
        const std::string name = tensor_name(p);
        const array& want = leaf.as_array();
        const auto it = by_name.find(name);
        if (it == by_name.end()) {
            problem(name, fmt::format("missing (expected {})", want.describe()));
            out.push_back(leaf);
            continue;
        }
        used.insert(name);
        const st_tensor& t = *it->second;
        if (t.dt != want.dtype() || t.shape != want.shape()) {
            problem(name,
                    fmt::format("expected {}, found {}", want.describe(), describe(t.dt, t.shape)));
            out.push_back(leaf);
            continue;
        }
        array a = tensor_array(f, t);
        loaded.emplace(name, a);
        out.emplace_back(std::move(a));
    }

    // Ties: the file's (when paramtree wrote it) against the target's.
    const auto recorded = file_ties_of(f);
    const std::map<std::string, std::string> file_ties = recorded.value_or(decltype(file_ties){});
    std::map<std::string, std::string> like_ties;
    for (const auto& tie : ties(like)) {
        std::string text = tensor_name(tie.source) + to_string(tie.transforms);
        const std::string name = tensor_name(tie.tied);
        like_ties[name] = text;
        if (recorded) {
            const auto ft = file_ties.find(name);
            if (ft == file_ties.end())
                problem(name,
                        fmt::format("the target ties it to {}, the file has no such tie", text));
            else if (ft->second != text)
                problem(name,
                        fmt::format("the file ties it to {}, the target to {}", ft->second, text));
        }
        const auto copy = by_name.find(name);
        if (copy == by_name.end()) continue;
        used.insert(name);
        if (!is_copy_of_source(f, *copy->second, tie, loaded))
            problem(name, fmt::format("holds a copy of the tied {} that differs from it", text));
    }
    for (const auto& [tied, source] : file_ties)
        if (!like_ties.contains(tied))
            problem(tied,
                    fmt::format("the file ties it to {}, the target has no such tie", source));

    if (options.strict)
        for (const auto& t : f.tensors)
            if (!used.contains(t.name))
                problem(t.name,
                        fmt::format("{} in the file has no place in the target (strict load)",
                                    describe(t.dt, t.shape)));
    problem.throw_if_any(f.source);
    return unflatten(def, std::move(out));
}

tree tree_of(const st_file& f) {
    const auto it = f.metadata.find(structure_key);
    if (it == f.metadata.end())
        bad_file(f.source, "__metadata__", "paramtree's structure (a file written by pt::save)",
                 "no paramtree.structure entry (use load(file, like) or load_arrays)");
    const auto by_name = tensors_by_name(f);
    return detail::decode_structure(
        it->second,
        [&](const std::string& name) {
            const auto t = by_name.find(name);
            if (t == by_name.end())
                bad_file(f.source, detail::escaped(name), "the tensor the structure names",
                         "no such tensor");
            return tensor_array(f, *t->second);
        },
        f.source);
}

std::map<std::string, array> arrays_of(const st_file& f) {
    std::map<std::string, array> out;
    for (const auto& t : f.tensors)
        out.emplace(t.name, tensor_array(f, t));
    return out;
}

} // namespace

namespace {
/// The ties of `t` as saved in the header: tied name -> {source, transforms}. A tie's name
/// must not be a tensor's or another tie's: the loader finds ties by name.
json encode_ties(const tree& t, const detail::encoded_structure& enc, const std::string& context) {
    std::map<std::string, std::string> taken; // name -> what has it, for the message
    for (const auto& [name, a] : enc.tensors)
        taken.emplace(name, "a tensor");
    json out = json::object();
    for (const auto& tie : ties(t)) {
        std::string name = tensor_name(tie.tied);
        if (!detail::valid_tensor_name(name))
            throw format_error("save " + context, keystr(tie.tied),
                               "a tie name without control characters, not __metadata__",
                               fmt::format("'{}'", detail::escaped(name)));
        const auto [at, fresh] =
            taken.emplace(name, "the tie at " + display_path(keystr(tie.tied)));
        if (!fresh)
            throw format_error(
                "save " + context, keystr(tie.tied), "a tie name of its own",
                fmt::format("'{}', also the name of {}", detail::escaped(name), at->second));
        json transforms = json::array();
        for (const auto& tr : tie.transforms)
            if (tr.kind() != transform::op::identity) transforms.push_back(tr.to_string());
        out[name] = {{"source", tensor_name(tie.source)}, {"transforms", std::move(transforms)}};
    }
    return out;
}
} // namespace

namespace detail {
void write_safetensors(const std::filesystem::path& file,
                       const std::vector<std::pair<std::string, array>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
    const std::string context = file.string();
    std::string text;
    try {
        json header = json::object();
        std::size_t offset = 0;
        for (const auto& [name, a] : tensors) {
            header[name] = {{"dtype", st_dtype(a.dtype())},
                            {"shape", a.shape()},
                            {"data_offsets", {offset, offset + a.nbytes()}}};
            offset += a.nbytes();
        }
        header["__metadata__"] = metadata;
        text = header.dump();
    } catch (const json::exception&) {
        throw format_error("save " + context, "", "UTF-8 keys and strings",
                           "a string that is not valid UTF-8");
    }
    // Spaces pad the header so the data starts 8-byte aligned (the format allows it, and it
    // lets a reader map float64 tensors in place).
    text.append((8 - text.size() % 8) % 8, ' ');
    // What the loader refuses must not be written.
    if (text.size() > max_header)
        throw format_error(
            "save " + context, "",
            fmt::format("a header of at most {} bytes (what loaders accept)", max_header),
            fmt::format("{} bytes for {} tensors", text.size(), tensors.size()));
    const std::uint64_t n = text.size();
    atomic_write(file, [&](int fd) {
        write_all(fd, &n, 8, file);
        write_all(fd, text.data(), text.size(), file);
        for (const auto& [name, a] : tensors)
            write_all(fd, a.bytes(), a.nbytes(), file);
    });
}

std::map<std::string, std::string> structure_metadata(const tree& t, const encoded_structure& enc,
                                                      const std::string& context) {
    return {{"format", "paramtree"},
            {structure_key, enc.text},
            {ties_key, encode_ties(t, enc, context).dump()},
            {"paramtree.treedef", paramtree::structure(t).to_string()}};
}
} // namespace detail

void save(const std::filesystem::path& file, const tree& t) {
    const std::string context = file.string();
    const auto enc = detail::encode_structure(t, context);
    detail::write_safetensors(file, enc.tensors, detail::structure_metadata(t, enc, context));
}

// ---- sharded checkpoints -------------------------------------------------------------------

namespace {
/// A sharded checkpoint is named by its index, `*.json` (as `model.safetensors.index.json`).
bool is_index(const std::filesystem::path& file) {
    return file.extension() == ".json";
}

/// The tree a sharded checkpoint's index describes, its tensors read from the shard files
/// the index names (relative to the index's directory).
tree load_sharded_tree(const std::filesystem::path& index, const load_options& options) {
    const std::string source = index.string();
    const auto bytes = detail::read_file(index);
    bool too_deep = false;
    const json j = detail::parse_bounded(
        std::string_view(reinterpret_cast<const char*>(bytes.bytes.data()), bytes.bytes.size()), 8,
        &too_deep);
    const auto bad = [&](std::string where, std::string expected, std::string found) {
        throw format_error("sharded checkpoint " + source, std::move(where), std::move(expected),
                           std::move(found));
    };
    if (!j.is_object() || !j.contains("metadata") || !j["metadata"].is_object() ||
        !j.contains("weight_map") || !j["weight_map"].is_object())
        bad("", "an index with \"metadata\" and \"weight_map\" objects",
            too_deep ? "JSON nested too deeply" : detail::describe_json(j));
    const json& meta = j["metadata"];
    if (!meta.contains(structure_key) || !meta[structure_key].is_string())
        bad("metadata", "paramtree's structure (an index written by distributed::save_sharded)",
            "no paramtree.structure string");
    // Each shard once, in any order; each tensor from the file the index names for it.
    struct shard {
        st_file file;
        std::map<std::string, const st_tensor*> tensors; // into file.tensors
    };
    std::map<std::string, shard> shards; // node-based: the pointers below stay valid
    std::map<std::string, std::pair<const st_file*, const st_tensor*>> where;
    for (const auto& [name, file] : j["weight_map"].items()) {
        if (!file.is_string())
            bad(detail::escaped(name), "a shard file name", detail::describe_json(file));
        const std::string f = file.get<std::string>();
        if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..")
            bad(detail::escaped(name), "a file name next to the index", f);
        auto it = shards.find(f);
        if (it == shards.end()) {
            it = shards.emplace(f, shard{open_file(index.parent_path() / f, options.memory), {}})
                     .first;
            it->second.tensors = tensors_by_name(it->second.file);
        }
        const auto found = it->second.tensors.find(name);
        if (found == it->second.tensors.end())
            bad(detail::escaped(name), "the tensor in " + f, "no such tensor");
        where[name] = {&it->second.file, found->second};
    }
    return detail::decode_structure(
        meta[structure_key].get<std::string>(),
        [&](const std::string& name) {
            const auto t = where.find(name);
            if (t == where.end())
                bad(detail::escaped(name), "the tensor the structure names in the weight map",
                    "no such entry");
            return tensor_array(*t->second.first, *t->second.second);
        },
        source);
}

/// `t` (loaded from `source`) checked against `like`: the same structure and, leaf by leaf,
/// the same dtype and shape; every difference reported by path in one format_error.
tree checked_against(const tree& t, const tree& like, const std::string& source) {
    if (!(paramtree::structure(t) == paramtree::structure(like)))
        throw format_error("sharded checkpoint " + source, "",
                           paramtree::structure(like).to_string() + " (the structure of like)",
                           paramtree::structure(t).to_string());
    const auto [got, def] = flatten_with_path(t);
    const auto want = leaves(like);
    std::vector<std::string> problems;
    for (std::size_t i = 0; i < want.size(); ++i) {
        const tree& g = got[i].second;
        if (want[i].is_array() != g.is_array() ||
            (g.is_array() && (g.as_array().dtype() != want[i].as_array().dtype() ||
                              g.as_array().shape() != want[i].as_array().shape())))
            problems.push_back(fmt::format("{}: {} (expected {})", keystr(got[i].first),
                                           describe(g), describe(want[i])));
    }
    if (!problems.empty())
        throw format_error("sharded checkpoint " + source, "", "the dtypes and shapes of like",
                           fmt::format("{}", fmt::join(problems, "; ")));
    return t;
}
} // namespace

tree load(const std::filesystem::path& file, const tree& like, const load_options& options) {
    if (is_index(file))
        return checked_against(load_sharded_tree(file, options), like, file.string());
    return load_like(open_file(file, options.memory), like, options);
}
tree load_tree(const std::filesystem::path& file, const load_options& options) {
    if (is_index(file)) return load_sharded_tree(file, options);
    return tree_of(open_file(file, options.memory));
}
std::map<std::string, array> load_arrays(const std::filesystem::path& file,
                                         const load_options& options) {
    return arrays_of(open_file(file, options.memory));
}
tree load(std::span<const std::byte> bytes, const tree& like, const load_options& options) {
    return load_like(open_bytes(bytes), like, options);
}
tree load_tree(std::span<const std::byte> bytes) {
    return tree_of(open_bytes(bytes));
}
std::map<std::string, array> load_arrays(std::span<const std::byte> bytes) {
    return arrays_of(open_bytes(bytes));
}

// ---- .npy -----------------------------------------------------------------------------------

namespace {
std::string npy_descr(dtype d) {
    // Little-endian, except bool, whose single byte has no byte order.
    return std::string(d == dtype::boolean ? "|" : "<") + std::string(info(d).npy_kind);
}

[[noreturn]] void bad_npy(const std::filesystem::path& file, std::string expected,
                          std::string found) {
    throw format_error("npy " + file.string(), "", std::move(expected), std::move(found));
}

/// The value of `'key':` in a .npy header dict (a Python literal), up to the next
/// top-level comma or closing brace.
std::string npy_field(const std::filesystem::path& file, const std::string& header,
                      const std::string& key) {
    const std::string needle = "'" + key + "'";
    auto at = header.find(needle);
    if (at == std::string::npos) bad_npy(file, "a header with " + needle, header);
    at = header.find(':', at + needle.size());
    if (at == std::string::npos) bad_npy(file, "'" + key + "': value", header);
    std::size_t end = at + 1;
    int depth = 0;
    for (; end < header.size(); ++end) {
        const char c = header[end];
        if (c == '(') ++depth;
        if (c == ')') --depth;
        if (depth == 0 && (c == ',' || c == '}')) break;
    }
    std::string v = header.substr(at + 1, end - at - 1);
    v.erase(0, v.find_first_not_of(" \t"));
    v.erase(v.find_last_not_of(" \t") + 1);
    return v;
}
} // namespace

void save_npy(const std::filesystem::path& file, const array& a) {
    std::string shape;
    for (const auto e : a.shape())
        shape += fmt::format("{}, ", e);
    if (a.ndim() > 1) shape.erase(shape.size() - 2); // (3,) for one axis, (3, 4) for two
    if (a.ndim() == 1) shape.erase(shape.size() - 1);
    std::string header = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': ({}), }}",
                                     npy_descr(a.dtype()), shape);
    // Magic (6) + version (2) + length (2) + header + '\n', padded to a multiple of 64.
    const std::size_t total = 10 + header.size() + 1;
    header.append((64 - total % 64) % 64, ' ');
    header.push_back('\n');
    const auto len = static_cast<std::uint16_t>(header.size());
    atomic_write(file, [&](int fd) {
        write_all(fd, "\x93NUMPY\x01\x00", 8, file);
        write_all(fd, &len, 2, file);
        write_all(fd, header.data(), header.size(), file);
        write_all(fd, a.bytes(), a.nbytes(), file);
    });
}

namespace {
/// The shape tuple of a .npy header, `(3, 4)`; one whose byte size would not fit in 64 bits
/// is refused here, before anything is allocated.
shape_type npy_shape(const std::filesystem::path& file, const std::string& text) {
    shape_type shape;
    if (text.size() < 2 || text.front() != '(' || text.back() != ')')
        bad_npy(file, "a shape tuple", text);
    std::size_t count = 1;
    for (std::size_t i = 1; i + 1 < text.size();) {
        while (i + 1 < text.size() && (text[i] == ' ' || text[i] == ','))
            ++i;
        if (i + 1 >= text.size()) break;
        std::size_t e = 0;
        const auto [end, ec] = std::from_chars(text.data() + i, text.data() + text.size() - 1, e);
        if (ec != std::errc{}) bad_npy(file, "a shape of non-negative integers", text);
        if (e != 0 && count > std::numeric_limits<std::size_t>::max() / 16 / e)
            bad_npy(file, "a shape whose byte size fits in 64 bits", text);
        count *= e;
        shape.push_back(e);
        i = static_cast<std::size_t>(end - text.data());
    }
    return shape;
}
} // namespace

array load_npy(const std::filesystem::path& file) {
    const auto m = detail::read_file(file);
    const auto& b = m.bytes;
    if (b.size() < 10 || std::memcmp(b.data(), "\x93NUMPY", 6) != 0)
        bad_npy(file, "the .npy magic \\x93NUMPY", fmt::format("{} bytes without it", b.size()));
    const auto major = static_cast<unsigned>(b[6]);
    std::size_t header_len = 0, start = 0;
    if (major == 1) {
        std::uint16_t l = 0;
        std::memcpy(&l, b.data() + 8, 2);
        header_len = l;
        start = 10;
    } else if (major == 2 || major == 3) {
        if (b.size() < 12) bad_npy(file, "a version 2 header length", "a truncated file");
        std::uint32_t l = 0;
        std::memcpy(&l, b.data() + 8, 4);
        header_len = l;
        start = 12;
    } else {
        bad_npy(file, "format version 1, 2 or 3", fmt::format("version {}", major));
    }
    if (header_len > b.size() - start)
        bad_npy(file, "a header within the file", fmt::format("{} header bytes", header_len));
    const std::string header(reinterpret_cast<const char*>(b.data() + start), header_len);
    const std::string descr = npy_field(file, header, "descr");
    const std::string fortran = npy_field(file, header, "fortran_order");
    const std::string shape_text = npy_field(file, header, "shape");

    if (descr.size() != 5 || descr.front() != '\'' || descr.back() != '\'')
        bad_npy(file, "a descr like '<f4'", descr);
    const char order = descr[1];
    const std::string kind = descr.substr(2, 2);
    std::optional<dtype> dt;
    for (const auto& n : dtype_table())
        if (kind == n.npy_kind) dt = n.type;
    if (!dt || !(order == '<' || order == '>' || order == '|' || order == '='))
        bad_npy(file, "descr <f4, <f8, <i4, <i8 or |b1 (either byte order)", descr);
    if (fortran != "False" && fortran != "True")
        bad_npy(file, "fortran_order True or False", fortran);

    const shape_type shape = npy_shape(file, shape_text);
    const std::size_t count = detail::checked_size(shape);
    const std::size_t esize = dtype_size(*dt);
    const std::size_t data_start = start + header_len;
    if (b.size() - data_start != count * esize)
        bad_npy(file, fmt::format("{} data bytes for {}", count * esize, describe(*dt, shape)),
                fmt::format("{} bytes", b.size() - data_start));
    auto out_buf = detail::array_access::allocate(*dt, shape);
    array out = std::move(out_buf.first);
    void* buf = out_buf.second; // named: clang 14 cannot capture bindings
    auto* dst = static_cast<std::byte*>(buf);
    if (count != 0) std::memcpy(dst, b.data() + data_start, count * esize);
    if (*dt == dtype::boolean)
        for (std::size_t i = 0; i < count; ++i)
            if (static_cast<unsigned char>(dst[i]) > 1)
                bad_npy(file, "bool bytes 0 or 1",
                        fmt::format("{}", static_cast<unsigned>(dst[i])));
    if (order == '>' && esize > 1)
        for (std::size_t i = 0; i < count; ++i)
            std::reverse(dst + i * esize, dst + (i + 1) * esize);
    if (fortran == "True" && shape.size() > 1) {
        // Column-major: the same bytes are the transpose of the reversed shape.
        shape_type reversed(shape.rbegin(), shape.rend());
        std::vector<std::size_t> axes(shape.size());
        for (std::size_t i = 0; i < axes.size(); ++i)
            axes[i] = axes.size() - 1 - i;
        return permute_axes(out.reshape(reversed), axes);
    }
    return out;
}

} // namespace paramtree
