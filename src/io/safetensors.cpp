// paramtree — the safetensors format (see safetensors.hpp): parsing with every byte checked,
// and the atomic writer.
#include "io/safetensors.hpp"
#include "io/structure_codec.hpp" // describe_json, valid_tensor_name

#include <paramtree/detail/array_impl.hpp>
#include <paramtree/detail/file_io.hpp>
#include <paramtree/error.hpp>

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

namespace paramtree::detail {

namespace {
using json = nlohmann::json;
} // namespace

// ---- errors ---------------------------------------------------------------------------------

[[noreturn]] void bad_file(const std::string& source, const std::string& where,
                           std::string expected, std::string found) {
    throw format_error("safetensors " + source, where, std::move(expected), std::move(found));
}

namespace {

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

// The data section is covered exactly once: no overlap, no hole (as the format requires, so
// no file is also something else). Sorts the tensors by their place in it.
void check_coverage(st_file& f) {
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
}

/// The header's SAX events, passed on to nlohmann's DOM builder, with what a JSON object
/// forgets: a top-level name given twice; and a bound on nesting (so a crafted header cannot
/// make the builder's stack grow). Linear in the header: nlohmann's callback parser, which
/// could do both, searches the parent container at the end of every object (3.11.2), and
/// 40,000 tensors took 13 s to read.
struct header_reader {
    using number_integer_t = json::number_integer_t;
    using number_unsigned_t = json::number_unsigned_t;
    using number_float_t = json::number_float_t;
    using string_t = json::string_t;
    using binary_t = json::binary_t;
    static constexpr int max_depth = 4;

    explicit header_reader(json& out) : dom(out, false) {}
    nlohmann::detail::json_sax_dom_parser<json> dom;
    int depth = 0;
    bool too_deep = false;
    std::set<std::string> seen;
    std::string duplicate;

    bool null() { return dom.null(); }
    bool boolean(bool v) { return dom.boolean(v); }
    bool number_integer(number_integer_t v) { return dom.number_integer(v); }
    bool number_unsigned(number_unsigned_t v) { return dom.number_unsigned(v); }
    bool number_float(number_float_t v, const string_t& s) { return dom.number_float(v, s); }
    bool string(string_t& v) { return dom.string(v); }
    bool binary(binary_t& v) { return dom.binary(v); }
    bool start_object(std::size_t n) { return enter() && dom.start_object(n); }
    bool key(string_t& k) {
        if (depth == 1 && !seen.insert(k).second && duplicate.empty()) duplicate = k;
        return dom.key(k);
    }
    bool end_object() {
        --depth;
        return dom.end_object();
    }
    bool start_array(std::size_t n) { return enter() && dom.start_array(n); }
    bool end_array() {
        --depth;
        return dom.end_array();
    }
    template <class Exception>
    bool parse_error(std::size_t at, const std::string& token, const Exception& e) {
        return dom.parse_error(at, token, e);
    }

private:
    bool enter() {
        if (++depth > max_depth) too_deep = true;
        return !too_deep;
    }
};

} // namespace

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
    json header;
    header_reader reader(header);
    const bool parsed = json::sax_parse(text, text + n, &reader);
    if (reader.too_deep)
        bad_file(f.source, "", "a header nested at most 4 levels", "deeper nesting");
    if (!parsed || reader.dom.is_errored() || !header.is_object())
        bad_file(f.source, "", "a JSON object as header", "invalid JSON");
    if (!reader.duplicate.empty())
        bad_file(f.source, reader.duplicate, "distinct tensor names", "a duplicate");
    f.data = bytes.data() + 8 + n;
    f.data_size = bytes.size() - 8 - n;

    for (const auto& [name, v] : header.items()) {
        if (name != "__metadata__" && !detail::valid_tensor_name(name))
            bad_file(f.source, detail::escaped(name),
                     "a tensor name of plain UTF-8 (no control or format characters)",
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
    check_coverage(f);
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
    auto a = detail::fresh_bytes(t.dt, t.shape);
    if (nbytes != 0) std::memcpy(a.data, p, nbytes);
    return std::move(a.value);
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

} // namespace paramtree::detail
