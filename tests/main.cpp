// paramtree — the Catch2 main, built once for the whole unit-test binary.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
