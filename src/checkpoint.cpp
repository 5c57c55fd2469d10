// paramtree — checkpoints: safetensors writing (atomic) and reading (mmap, every byte
// validated), the tree-structure codec kept in the header, and .npy files.
#include <paramtree/at.hpp>
#include <paramtree/checkpoint.hpp>
#include <paramtree/detail/array_impl.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/node.hpp>
#include <paramtree/detail/sharing.hpp>
#include <paramtree/error.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/shared.hpp>
#include <paramtree/transform.hpp>
#include <paramtree/treedef.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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
constexpr int max_depth = 4096;                 // of the saved tree structure
constexpr const char* structure_key = "paramtree.structure";
constexpr const char* ties_key = "paramtree.ties";

// ---- errors ---------------------------------------------------------------------------------

[[noreturn]] void bad_file(const std::string& source, const std::string& where,
                           std::string expected, std::string found) {
    throw format_error("safetensors " + source, where, std::move(expected), std::move(found));
}

[[noreturn]] void io_fail(const std::filesystem::path& file, const std::string& what, int err) {
    throw io_error(what, file.string(), "success", std::strerror(err));
}

// ---- dtypes ---------------------------------------------------------------------------------

/// Each dtype's name in safetensors headers and its numpy kind (`f4`): one table for both
/// formats, both directions.
struct dtype_names {
    dtype dt;
    std::string_view safetensors;
    std::string_view npy_kind;
};
constexpr dtype_names dtype_table[] = {{dtype::float32, "F32", "f4"},
                                       {dtype::float64, "F64", "f8"},
                                       {dtype::int32, "I32", "i4"},
                                       {dtype::int64, "I64", "i8"},
                                       {dtype::boolean, "BOOL", "b1"}};

const dtype_names& names_of(dtype d) {
    for (const auto& n : dtype_table)
        if (n.dt == d) return n;
    return dtype_table[0]; // unreachable: the table lists every dtype
}

std::string_view st_dtype(dtype d) {
    return names_of(d).safetensors;
}

dtype parse_st_dtype(const std::string& source, const std::string& name, const std::string& s) {
    for (const auto& n : dtype_table)
        if (s == n.safetensors) return n.dt;
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
        if (name == "__metadata__") {
            if (!v.is_object())
                bad_file(f.source, name, "an object of strings", std::string(v.type_name()));
            for (const auto& [k, s] : v.items()) {
                if (!s.is_string())
                    bad_file(f.source, "__metadata__." + k, "a string", std::string(s.type_name()));
                f.metadata[k] = s.get<std::string>();
            }
            f.has_metadata = true;
            continue;
        }
        if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
            !v.contains("data_offsets") || !v["dtype"].is_string() || !v["shape"].is_array() ||
            !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
            bad_file(f.source, name,
                     "{\"dtype\": ..., \"shape\": [...], \"data_offsets\": [begin, end]}",
                     v.dump(-1, ' ', true).substr(0, 200));
        st_tensor t;
        t.name = name;
        t.dt = parse_st_dtype(f.source, name, v["dtype"].get<std::string>());
        std::size_t bytes_needed = dtype_size(t.dt);
        for (const auto& e : v["shape"]) {
            const std::size_t d = as_size(f.source, name, e, "extent");
            t.shape.push_back(d);
            if (d != 0 && bytes_needed > std::numeric_limits<std::size_t>::max() / d)
                bad_file(f.source, name, "a shape whose byte size fits in 64 bits",
                         v["shape"].dump());
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
        f.tensors.push_back(std::move(t));
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
    if (f.owner && reinterpret_cast<std::uintptr_t>(p) % dtype_size(t.dt) == 0)
        return array::from_owner(t.dt, t.shape, count, p, f.owner);
    auto a_buf = detail::array_access::allocate(t.dt, t.shape);
    array a = std::move(a_buf.first);
    void* buf = a_buf.second; // named: clang 14 cannot capture bindings
    if (nbytes != 0) std::memcpy(buf, p, nbytes);
    return a;
}

struct mapping {
    std::span<const std::byte> bytes;
    std::shared_ptr<const void> owner;
};

/// The file mapped read-only (its pages are shared with the page cache, not copied).
mapping map_file(const std::filesystem::path& file) {
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) io_fail(file, "open for reading", errno);
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int err = errno;
        ::close(fd);
        io_fail(file, "stat", err);
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw io_error("open for reading", file.string(), "a regular file", "something else");
    }
    const auto size = static_cast<std::size_t>(st.st_size);
    if (size == 0) {
        ::close(fd);
        return {};
    }
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    const int err = errno;
    ::close(fd);
    if (p == MAP_FAILED) io_fail(file, "mmap", err);
    std::shared_ptr<const void> owner(
        p, [size](const void* q) { ::munmap(const_cast<void*>(q), size); });
    return {{static_cast<const std::byte*>(p), size}, std::move(owner)};
}

st_file open_file(const std::filesystem::path& file) {
    auto m = map_file(file);
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

// ---- names ----------------------------------------------------------------------------------

/// The tensor name of a leaf: its dotted key path (`blocks.0.attn.q.weight`).
std::string tensor_name(const path& p) {
    return p.empty() ? std::string("__root__") : dotted(p);
}

// ---- the structure codec --------------------------------------------------------------------

json encode_static(const static_value& v) {
    return std::visit(
        [](const auto& x) -> json {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, bool>)
                return {{"k", "bool"}, {"v", x}};
            else if constexpr (std::is_same_v<T, std::int64_t>)
                return {{"k", "int"}, {"v", x}};
            else if constexpr (std::is_same_v<T, double>)
                return {{"k", "double"}, {"v", fmt::format("{}", x)}}; // exact, NaN and inf too
            else
                return {{"k", "str"}, {"v", x}};
        },
        v.get());
}

struct encoder {
    std::string source;
    std::map<std::string, path> names; // tensor name -> the leaf it came from
    std::vector<std::pair<std::string, array>> tensors;

    json encode(const tree& t, const path& p, int depth) {
        if (depth > max_depth)
            throw format_error("save " + source, keystr(p),
                               fmt::format("a tree at most {} levels deep", max_depth), "deeper");
        switch (t.kind()) {
        case node_kind::leaf:
            return std::visit(
                [&](const auto& v) -> json {
                    using T = std::decay_t<decltype(v)>;
                    if constexpr (std::is_same_v<T, array>) {
                        const std::string name = tensor_name(p);
                        if (name == "__metadata__")
                            throw format_error("save " + source, keystr(p),
                                               "a tensor name other than __metadata__", name);
                        const auto [at, fresh] = names.emplace(name, p);
                        if (!fresh)
                            throw format_error("save " + source, keystr(p),
                                               "a tensor name of its own",
                                               fmt::format("'{}', also the name of {}", name,
                                                           display_path(keystr(at->second))));
                        tensors.emplace_back(name, v);
                        return {{"k", "array"}, {"name", name}};
                    } else if constexpr (std::is_same_v<T, std::monostate>) {
                        return {{"k", "none"}};
                    } else {
                        return encode_static(static_value(v));
                    }
                },
                t.value());
        case node_kind::none:
            return {{"k", "none"}};
        case node_kind::list:
        case node_kind::tuple: {
            json c = json::array();
            for (std::size_t i = 0; i < t.size(); ++i)
                c.push_back(encode(t[i], p / i, depth + 1));
            return {{"k", t.kind() == node_kind::list ? "list" : "tuple"}, {"c", std::move(c)}};
        }
        case node_kind::dict: {
            json c = json::object();
            const auto keys = t.keys(); // insertion order
            for (const auto& k : keys)
                c[k] = encode(t[k], p / path_entry{dict_key{k}}, depth + 1);
            return {{"k", "dict"}, {"keys", keys}, {"c", std::move(c)}};
        }
        case node_kind::record: {
            json c = json::array();
            const auto fields = t.keys();
            for (const auto& f : fields)
                c.push_back(encode(t[f], p / path_entry{field_key{f}}, depth + 1));
            json statics = json::array();
            for (const auto& [name, v] : t.static_fields())
                statics.push_back({name, encode_static(v)});
            return {{"k", "record"},
                    {"name", std::string(t.record_name())},
                    {"fields", fields},
                    {"c", std::move(c)},
                    {"statics", std::move(statics)}};
        }
        case node_kind::shared: {
            const auto& m = *std::get<std::shared_ptr<const detail::shared_meta>>(t.node()->meta);
            json tags = json::array();
            for (const auto& [tag, at] : m.tags)
                tags.push_back({tag, keystr(at)});
            // Paths pass through a Shared node without an entry of their own.
            return {{"k", "shared"},
                    {"tags", std::move(tags)},
                    {"c", encode(t.child(0), p, depth + 1)}};
        }
        case node_kind::tied: {
            const auto& m = *std::get<std::shared_ptr<const detail::tie_meta>>(t.node()->meta);
            if (m.fn)
                throw sharing_error("save " + source, keystr(p), "a tie to a path (savable)",
                                    fmt::format("a tie through the callable get '{}'", m.fn_name));
            json transforms = json::array();
            for (const auto& tr : m.transforms)
                if (tr.kind() != transform::op::identity) transforms.push_back(tr.to_string());
            return {
                {"k", "tied"}, {"source", keystr(m.source)}, {"transforms", std::move(transforms)}};
        }
        }
        return {};
    }
};

/// The ties of `t` as saved in the header: tied name -> {source, transforms}.
json encode_ties(const tree& t) {
    json out = json::object();
    for (const auto& tie : ties(t)) {
        json transforms = json::array();
        for (const auto& tr : tie.transforms)
            if (tr.kind() != transform::op::identity) transforms.push_back(tr.to_string());
        out[tensor_name(tie.tied)] = {{"source", tensor_name(tie.source)},
                                      {"transforms", std::move(transforms)}};
    }
    return out;
}

struct decoder {
    const st_file& file;
    std::map<std::string, const st_tensor*> by_name;

    struct pending_tie {
        path where; // relative to the Shared node's child
        path source;
        std::vector<transform> transforms;
    };

    [[noreturn]] void bad(const path& p, std::string expected, const json& found) const {
        bad_file(file.source, display_path(keystr(p)), "structure: " + std::move(expected),
                 found.dump(-1, ' ', true).substr(0, 120));
    }

    const json& field(const json& j, const char* name, const path& p) const {
        if (!j.is_object() || !j.contains(name)) bad(p, fmt::format("a node with '{}'", name), j);
        return j[name];
    }
    std::string text(const json& j, const char* name, const path& p) const {
        const json& v = field(j, name, p);
        if (!v.is_string()) bad(p, fmt::format("a string '{}'", name), j);
        return v.get<std::string>();
    }
    const json& list_of(const json& j, const char* name, const path& p) const {
        const json& v = field(j, name, p);
        if (!v.is_array()) bad(p, fmt::format("a list '{}'", name), j);
        return v;
    }

    static_value decode_static(const json& j, const path& p) const {
        const std::string k = text(j, "k", p);
        const json& v = field(j, "v", p);
        if (k == "bool" && v.is_boolean()) return v.get<bool>();
        if (k == "int" && v.is_number_integer()) return v.get<std::int64_t>();
        if (k == "str" && v.is_string()) return v.get<std::string>();
        if (k == "double" && v.is_string()) {
            const std::string s = v.get<std::string>();
            double d = 0;
            const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
            if (ec == std::errc{} && end == s.data() + s.size()) return d;
            if (s == "nan" || s == "-nan") return std::numeric_limits<double>::quiet_NaN();
            if (s == "inf") return std::numeric_limits<double>::infinity();
            if (s == "-inf") return -std::numeric_limits<double>::infinity();
        }
        bad(p, "a bool, int, double or string value", j);
    }

    tree decode(const json& j, const path& p, const path& rel, std::vector<pending_tie>* scope,
                int depth) {
        if (depth > max_depth) bad(p, fmt::format("at most {} levels", max_depth), j);
        const std::string k = text(j, "k", p);
        if (k == "array") {
            const std::string name = text(j, "name", p);
            const auto it = by_name.find(name);
            if (it == by_name.end())
                bad_file(file.source, name, "the tensor the structure names", "no such tensor");
            return tensor_array(file, *it->second);
        }
        if (k == "none") return tree{};
        if (k == "bool" || k == "int" || k == "double" || k == "str")
            return std::visit([](const auto& v) { return tree(v); }, decode_static(j, p).get());
        if (k == "list" || k == "tuple") {
            std::vector<tree> items;
            const json& c = list_of(j, "c", p);
            for (std::size_t i = 0; i < c.size(); ++i)
                items.push_back(decode(c[i], p / i, rel / i, scope, depth + 1));
            return k == "list" ? list(std::move(items)) : paramtree::tuple(std::move(items));
        }
        if (k == "dict") {
            const json& keys = list_of(j, "keys", p);
            const json& c = field(j, "c", p);
            std::vector<std::pair<std::string, tree>> items;
            for (const auto& key : keys) {
                if (!key.is_string() || !c.is_object() || !c.contains(key.get<std::string>()))
                    bad(p, "dict keys with a child each", j);
                const std::string name = key.get<std::string>();
                const path_entry e = dict_key{name};
                items.emplace_back(name, decode(c[name], p / e, rel / e, scope, depth + 1));
            }
            return dict(std::move(items));
        }
        if (k == "record") {
            const json& fields = list_of(j, "fields", p);
            const json& c = list_of(j, "c", p);
            if (fields.size() != c.size()) bad(p, "one child per field", j);
            std::vector<std::pair<std::string, tree>> items;
            for (std::size_t i = 0; i < fields.size(); ++i) {
                if (!fields[i].is_string()) bad(p, "field names", j);
                const std::string name = fields[i].get<std::string>();
                const path_entry e = field_key{name};
                items.emplace_back(name, decode(c[i], p / e, rel / e, scope, depth + 1));
            }
            std::vector<std::pair<std::string, static_value>> statics;
            for (const auto& s : list_of(j, "statics", p)) {
                if (!s.is_array() || s.size() != 2 || !s[0].is_string())
                    bad(p, "[name, value] statics", j);
                statics.emplace_back(s[0].get<std::string>(), decode_static(s[1], p));
            }
            return record(text(j, "name", p), std::move(items), std::move(statics));
        }
        if (k == "tied") {
            if (!scope) bad(p, "a tie inside a Shared node", j);
            pending_tie tie{rel, parse_path(text(j, "source", p)), {}};
            for (const auto& tr : list_of(j, "transforms", p)) {
                if (!tr.is_string()) bad(p, "transform texts", j);
                tie.transforms.push_back(transform::parse(tr.get<std::string>()));
            }
            scope->push_back(std::move(tie));
            return tree{}; // filled in by the Shared node below, then pruned again by share
        }
        if (k == "shared") {
            std::vector<pending_tie> ties;
            tree child = decode(field(j, "c", p), p, path{}, &ties, depth + 1);
            std::vector<std::pair<std::string, path>> tags;
            for (const auto& t : list_of(j, "tags", p)) {
                if (!t.is_array() || t.size() != 2 || !t[0].is_string() || !t[1].is_string())
                    bad(p, "[tag, path] tags", j);
                tags.emplace_back(t[0].get<std::string>(), parse_path(t[1].get<std::string>()));
            }
            if (ties.empty()) return child;
            // Put each source's (transformed) value where the tie was, then tie them again:
            // the same validation as any share.
            std::vector<path> where;
            std::vector<tree> values;
            std::vector<detail::get_entry> gets;
            for (auto& t : ties) {
                values.push_back(detail::apply_chain(child.at(t.source), t.transforms));
                where.push_back(t.where);
                gets.push_back(detail::get_entry{t.source, t.transforms, nullptr, {}});
            }
            child = tree_at(where, child, values);
            return detail::share_impl(child, std::move(where), std::move(gets), std::move(tags));
        }
        bad(p, "a known node kind", j);
    }
};

// ---- writing --------------------------------------------------------------------------------

/// Writes a file atomically: `write(fd)` fills a temporary file next to `file`, which is then
/// fsync'ed and renamed over it (and the directory fsync'ed). On any failure the temporary
/// file is removed and `file` is untouched.
void atomic_write(const std::filesystem::path& file, const std::function<void(int)>& write) {
    const std::filesystem::path dir = file.has_parent_path() ? file.parent_path() : ".";
    std::string tmpl = (dir / ("." + file.filename().string() + ".tmp-XXXXXX")).string();
    const int fd = ::mkstemp(tmpl.data());
    if (fd < 0) io_fail(file, "create a temporary file", errno);
    try {
        write(fd);
        if (::fsync(fd) != 0) io_fail(tmpl, "fsync", errno);
        if (::close(fd) != 0) {
            const int err = errno;
            ::unlink(tmpl.c_str());
            io_fail(tmpl, "close", err);
        }
    } catch (...) {
        ::close(fd);
        ::unlink(tmpl.c_str());
        throw;
    }
    if (::rename(tmpl.c_str(), file.c_str()) != 0) {
        const int err = errno;
        ::unlink(tmpl.c_str());
        io_fail(file, "rename", err);
    }
    // The rename itself is durable only once the directory is.
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
}

void write_all(int fd, const void* data, std::size_t n, const std::filesystem::path& file) {
    const auto* p = static_cast<const char*>(data);
    while (n > 0) {
        const ssize_t w = ::write(fd, p, std::min<std::size_t>(n, std::size_t{1} << 30));
        if (w < 0) {
            if (errno == EINTR) continue;
            io_fail(file, "write", errno);
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
}

// ---- loading against a target ---------------------------------------------------------------

tree load_like(const st_file& f, const tree& like, const load_options& options) {
    std::map<std::string, const st_tensor*> by_name;
    for (const auto& t : f.tensors)
        by_name[t.name] = &t;
    std::vector<std::string> problems;
    std::string first_path;
    auto problem = [&](const std::string& where, std::string what) {
        if (first_path.empty()) first_path = where;
        problems.push_back(where + ": " + std::move(what));
    };
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
    std::map<std::string, std::string> file_ties;
    const auto meta = f.metadata.find(ties_key);
    if (meta != f.metadata.end()) {
        const json j = json::parse(meta->second, nullptr, false);
        if (j.is_discarded() || !j.is_object())
            bad_file(f.source, std::string("__metadata__.") + ties_key, "a JSON object",
                     "invalid JSON");
        for (const auto& [tied, v] : j.items()) {
            if (!v.is_object() || !v.contains("source") || !v["source"].is_string())
                bad_file(f.source, std::string("__metadata__.") + ties_key, "{source, transforms}",
                         v.dump(-1, ' ', true).substr(0, 120));
            std::string text = v["source"].get<std::string>();
            if (v.contains("transforms") && v["transforms"].is_array())
                for (const auto& tr : v["transforms"])
                    if (tr.is_string()) text += tr.get<std::string>();
            file_ties[tied] = std::move(text);
        }
    }
    std::map<std::string, std::string> like_ties;
    for (const auto& tie : ties(like)) {
        std::string text = tensor_name(tie.source) + to_string(tie.transforms);
        const std::string name = tensor_name(tie.tied);
        like_ties[name] = text;
        if (meta != f.metadata.end()) {
            const auto ft = file_ties.find(name);
            if (ft == file_ties.end())
                problem(name,
                        fmt::format("the target ties it to {}, the file has no such tie", text));
            else if (ft->second != text)
                problem(name,
                        fmt::format("the file ties it to {}, the target to {}", ft->second, text));
        }
        // A file from another tool may hold the tied tensor under its own name too: it must
        // then be a copy of the (transformed) source.
        const auto copy = by_name.find(name);
        if (copy == by_name.end()) continue;
        used.insert(name);
        const auto src = loaded.find(tensor_name(tie.source));
        if (src == loaded.end() || !tie.getter.empty()) continue;
        array expected = src->second;
        for (const auto& tr : tie.transforms)
            expected = tr.apply(expected);
        const st_tensor& t = *copy->second;
        if (t.dt != expected.dtype() || t.shape != expected.shape() ||
            !array_equal(tensor_array(f, t), expected))
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
    if (!problems.empty())
        throw format_error("load " + f.source, first_path, "a file matching the target",
                           fmt::format("{} problem{}: {}", problems.size(),
                                       problems.size() == 1 ? "" : "s", fmt::join(problems, "; ")));
    return unflatten(def, std::move(out));
}

tree tree_of(const st_file& f) {
    const auto it = f.metadata.find(structure_key);
    if (it == f.metadata.end())
        bad_file(f.source, "__metadata__", "paramtree's structure (a file written by pt::save)",
                 "no paramtree.structure entry (use load(file, like) or load_arrays)");
    std::string duplicate_guard;
    const json j = json::parse(it->second, nullptr, false);
    if (j.is_discarded())
        bad_file(f.source, std::string("__metadata__.") + structure_key, "JSON", "invalid JSON");
    decoder d{f, {}};
    for (const auto& t : f.tensors)
        d.by_name[t.name] = &t;
    return d.decode(j, path{}, path{}, nullptr, 0);
}

std::map<std::string, array> arrays_of(const st_file& f) {
    std::map<std::string, array> out;
    for (const auto& t : f.tensors)
        out.emplace(t.name, tensor_array(f, t));
    return out;
}

} // namespace

void save(const std::filesystem::path& file, const tree& t) {
    encoder enc{file.string(), {}, {}};
    const json structure = enc.encode(t, path{}, 0);
    json header = json::object();
    std::size_t offset = 0;
    for (const auto& [name, a] : enc.tensors) {
        header[name] = {{"dtype", st_dtype(a.dtype())},
                        {"shape", a.shape()},
                        {"data_offsets", {offset, offset + a.nbytes()}}};
        offset += a.nbytes();
    }
    header["__metadata__"] = {{"format", "paramtree"},
                              {structure_key, structure.dump()},
                              {ties_key, encode_ties(t).dump()},
                              {"paramtree.treedef", paramtree::structure(t).to_string()}};
    std::string text;
    try {
        text = header.dump();
    } catch (const json::exception&) {
        throw format_error("save " + file.string(), "", "UTF-8 keys and strings",
                           "a string that is not valid UTF-8");
    }
    // Spaces pad the header so the data starts 8-byte aligned (the format allows it, and it
    // lets a reader map float64 tensors in place).
    text.append((8 - text.size() % 8) % 8, ' ');
    const std::uint64_t n = text.size();
    atomic_write(file, [&](int fd) {
        write_all(fd, &n, 8, file);
        write_all(fd, text.data(), text.size(), file);
        for (const auto& [name, a] : enc.tensors)
            write_all(fd, a.bytes(), a.nbytes(), file);
    });
}

tree load(const std::filesystem::path& file, const tree& like, const load_options& options) {
    return load_like(open_file(file), like, options);
}
tree load_tree(const std::filesystem::path& file) {
    return tree_of(open_file(file));
}
std::map<std::string, array> load_arrays(const std::filesystem::path& file) {
    return arrays_of(open_file(file));
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
    return std::string(d == dtype::boolean ? "|" : "<") + std::string(names_of(d).npy_kind);
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

array load_npy(const std::filesystem::path& file) {
    const auto m = map_file(file);
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
    for (const auto& n : dtype_table)
        if (kind == n.npy_kind) dt = n.dt;
    if (!dt || !(order == '<' || order == '>' || order == '|' || order == '='))
        bad_npy(file, "descr <f4, <f8, <i4, <i8 or |b1 (either byte order)", descr);
    if (fortran != "False" && fortran != "True")
        bad_npy(file, "fortran_order True or False", fortran);

    shape_type shape;
    if (shape_text.size() < 2 || shape_text.front() != '(' || shape_text.back() != ')')
        bad_npy(file, "a shape tuple", shape_text);
    std::size_t count = 1;
    for (std::size_t i = 1; i + 1 < shape_text.size();) {
        while (i + 1 < shape_text.size() && (shape_text[i] == ' ' || shape_text[i] == ','))
            ++i;
        if (i + 1 >= shape_text.size()) break;
        std::size_t e = 0;
        const auto [end, ec] =
            std::from_chars(shape_text.data() + i, shape_text.data() + shape_text.size() - 1, e);
        if (ec != std::errc{}) bad_npy(file, "a shape of non-negative integers", shape_text);
        if (e != 0 && count > std::numeric_limits<std::size_t>::max() / 16 / e)
            bad_npy(file, "a shape whose byte size fits in 64 bits", shape_text);
        count *= e;
        shape.push_back(e);
        i = static_cast<std::size_t>(end - shape_text.data());
    }
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
