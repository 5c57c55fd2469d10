// paramtree — .npy files (see <paramtree/npy.hpp>).
#include <paramtree/detail/array_impl.hpp>
#include <paramtree/detail/file_io.hpp>
#include <paramtree/error.hpp>
#include <paramtree/npy.hpp>
#include <paramtree/transform.hpp> // permute_axes: Fortran order

#include <bit>
#include <charconv>
#include <cstring>
#include <limits>
#include <optional>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace paramtree {

using detail::atomic_write;
using detail::write_all;

static_assert(std::endian::native == std::endian::little,
              ".npy data is read as little-endian in place");

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
    auto out_buf = detail::fresh_bytes(*dt, shape);
    array out = std::move(out_buf.value);
    auto* dst = out_buf.data;
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
