// Tests for <paramtree/npy.hpp>: .npy files from numpy in every byte and memory order, the
// malformed ones refused, and round trips.
#include <catch2/catch.hpp>

#include <paramtree/error.hpp>
#include <paramtree/npy.hpp>
#include <paramtree/random.hpp>

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace pt = paramtree;
namespace fs = std::filesystem;
namespace rnd = paramtree::random;

TEST_CASE("npy: every byte and memory order, and round trips", "[npy]") {
    const fs::path dir = fs::path(PT_TEST_DATA) / "npy";
    const std::vector<double> expected{0, 1, 2, 3, 4, 5};
    for (const char* name : {"f4_c.npy", "f8_big_endian.npy", "i4_fortran.npy", "i8_v2.npy"}) {
        INFO(name);
        const pt::array a = pt::load_npy(dir / name);
        CHECK(a.shape() == pt::shape_type{2, 3});
        CHECK(a.to_doubles() == expected);
    }
    CHECK(pt::load_npy(dir / "f8_big_endian.npy").dtype() == pt::dtype::float64);
    CHECK(pt::load_npy(dir / "b1.npy").to_doubles() == std::vector<double>{1, 0, 1});
    for (const char* name : {"bad_magic.npy", "bad_descr.npy", "truncated_data.npy"})
        CHECK_THROWS_AS(pt::load_npy(dir / name), pt::format_error);
    const fs::path s = fs::temp_directory_path() / ("pt-npy-" + std::to_string(::getpid()));
    fs::create_directories(s);
    const pt::array r = rnd::normal(rnd::make_key(4), {3, 4, 5}, pt::dtype::float64);
    pt::save_npy(s / "r.npy", r);
    CHECK(pt::array_equal(pt::load_npy(s / "r.npy"), r));
    pt::save_npy(s / "v.npy", pt::array{1, 2, 3});
    CHECK(pt::load_npy(s / "v.npy").to_doubles() == std::vector<double>{1, 2, 3});
    pt::save_npy(s / "scalar.npy", pt::array::scalar<std::int64_t>(9));
    CHECK(pt::load_npy(s / "scalar.npy").item() == 9);
    // A failed write leaves no file and says where.
    CHECK_THROWS_AS(pt::save_npy(s / "missing-dir" / "x.npy", r), pt::io_error);
    CHECK(!fs::exists(s / "missing-dir"));
    fs::remove_all(s);
}
