// Tests for <paramtree/array.hpp>.
#include <catch2/catch.hpp>

#include <paramtree/array.hpp>
#include <paramtree/error.hpp>

namespace pt = paramtree;

TEST_CASE("array: construction from nested braces", "[array]") {
    const pt::array a{{1.f, 2.f, 3.f}, {4.f, 5.f, 6.f}};
    CHECK(a.dtype() == pt::dtype::float32);
    CHECK(a.shape() == pt::shape_type{2, 3});
    CHECK(a.size() == 6);
    CHECK(a.nbytes() == 24);
    CHECK(a.item(4) == 5.0);
    CHECK(a.describe() == "f32[2,3]");

    const pt::array b{1.0, 2.0};
    CHECK(b.dtype() == pt::dtype::float64);
    const pt::array c{{{std::int64_t{1}, std::int64_t{2}}}, {{std::int64_t{3}, std::int64_t{4}}}};
    CHECK(c.shape() == pt::shape_type{2, 1, 2});
    CHECK(c.values<std::int64_t>()[3] == 4);
    const pt::array d{true, false, true};
    CHECK(d.dtype() == pt::dtype::boolean);
    CHECK(d.values<bool>()[2]);
}

TEST_CASE("array: ragged nested braces are a shape_error", "[array][error]") {
    CHECK_THROWS_AS((pt::array{{1.f, 2.f}, {3.f}}), pt::shape_error);
    CHECK_THROWS_WITH((pt::array{{1.f, 2.f}, {3.f}}), Catch::Contains("row 1"));
}

TEST_CASE("array: zeros, ones, full, arange, scalar", "[array]") {
    CHECK(pt::array::zeros({2, 2}).item(3) == 0.0);
    const auto ones = pt::array::ones({3}, pt::dtype::int32);
    CHECK(ones.values<std::int32_t>()[2] == 1);
    CHECK(pt::array::full({2}, 2.5, pt::dtype::float64).item(1) == 2.5);
    CHECK(pt::array::arange(5).item(4) == 4.0);
    const auto s = pt::array::scalar(7.0);
    CHECK(s.ndim() == 0);
    CHECK(s.size() == 1);
    CHECK(pt::array().item() == 0.0);
}

TEST_CASE("array: copies are O(1) and share storage", "[array]") {
    const auto a = pt::array::zeros({512, 512});
    const pt::array b = a; // NOLINT(performance-unnecessary-copy-initialization)
    CHECK(pt::same_storage(a, b));
    CHECK_FALSE(pt::same_storage(a, pt::array::zeros({512, 512})));
    const auto r = a.reshape({512 * 512});
    CHECK(pt::same_storage(a, r));
    CHECK(r.shape() == pt::shape_type{512 * 512});
    CHECK(pt::same_storage(a.astype(pt::dtype::float32), a));
}

TEST_CASE("array: astype converts values", "[array]") {
    const pt::array a{1.5f, -2.5f};
    const auto i = a.astype(pt::dtype::int64);
    CHECK(i.dtype() == pt::dtype::int64);
    CHECK(i.values<std::int64_t>()[1] == -2);
    const auto wide = a.astype(pt::dtype::float64);
    CHECK(wide.values<double>()[0] == 1.5);
}

TEST_CASE("array: wrong element type and bad indices are errors", "[array][error]") {
    const pt::array a{1.f};
    CHECK_THROWS_AS(a.values<double>(), pt::leaf_error);
    CHECK_THROWS_WITH(a.values<double>(),
                      Catch::Contains("expected dtype float64, found dtype float32"));
    CHECK_THROWS_AS(a.item(1), pt::path_error);
    CHECK_THROWS_AS(a.reshape({2}), pt::shape_error);
    CHECK_THROWS_AS(pt::array::zeros({1ULL << 40, 1ULL << 40}), pt::shape_error);
    CHECK_THROWS_AS(pt::array::from_vector<float>({3}, {1.f, 2.f}), pt::shape_error);
}

namespace {
template <class A>
concept can_view = requires(A&& a) {
    std::forward<A>(a).template values<float>();
};
} // namespace

// values() on an rvalue is deleted: its span would dangle at the end of the statement.
static_assert(!can_view<pt::array>);
static_assert(can_view<const pt::array&>);

TEST_CASE("array: build fills a fresh buffer once", "[array]") {
    const auto a = pt::array::build<double>({2, 2}, [](std::span<double> out) {
        for (std::size_t i = 0; i < out.size(); ++i)
            out[i] = static_cast<double>(i * i);
    });
    CHECK(a.values<double>()[3] == 9.0);
    CHECK(reinterpret_cast<std::uintptr_t>(a.bytes()) % 64 == 0);
}

TEST_CASE("array: array_equal with and without tolerance", "[array]") {
    const pt::array a{1.0, 2.0};
    const pt::array b{1.0, 2.0 + 1e-9};
    CHECK(pt::array_equal(a, a));
    CHECK_FALSE(pt::array_equal(a, b));
    CHECK(pt::array_equal(a, b, 0, 1e-6));
    CHECK_FALSE(pt::array_equal(a, pt::array{1.f, 2.f}));
    CHECK_FALSE(pt::array_equal(a, pt::array{{1.0, 2.0}}));
    CHECK(pt::array_equal(pt::array{0.0}, pt::array{-0.0}));
}
