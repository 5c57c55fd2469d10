// paramtree — libFuzzer target for the checkpoint loader (scripts/fuzz builds and runs it).
// Whatever the bytes, loading must either succeed or throw pt::format_error (the one type for
// "this file is malformed"): any other exception, a crash, a stack overflow, an over-read
// (ASan) or undefined behaviour (UBSan) is a finding.
#include <paramtree/checkpoint.hpp>
#include <paramtree/error.hpp>
#include <paramtree/shared.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

namespace pt = paramtree;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    // A tied target, so the tie-checking paths of load(like) run too.
    static const pt::tree like =
        pt::share(pt::dict({{"a", pt::array::zeros({2})},
                            {"b", pt::array::zeros({2})},
                            {"n", pt::array::zeros({1}, pt::dtype::int64)}}),
                  pt::parse_path("['b']"), pt::parse_path("['a']"));
    try {
        (void)pt::load_arrays(bytes);
    } catch (const pt::format_error&) {
    }
    try {
        (void)pt::load_tree(bytes);
    } catch (const pt::format_error&) {
    }
    try {
        (void)pt::load(bytes, like, {.strict = false});
    } catch (const pt::format_error&) {
    }
    return 0;
}
