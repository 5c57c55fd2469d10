#!/usr/bin/env bash
# Installs the build into a scratch prefix and builds tests/consumer/main.cpp against it three
# ways — plain pkg-config, a meson project, a CMake project (find_package) — and runs each:
# the installed headers, library, .pc and CMake package config must be complete.
set -euo pipefail
build="$1"
src_dir="$2"
sanitize="${3:-none}"
# The consumer is compiled by the library's compiler (the sanitizer and OpenMP runtimes and
# the C++ library's ABI must match): the 4th argument, c++ by default.
export CXX="${4:-c++}"
flags=()
# A sanitized library needs the sanitizer runtime in the consumer too.
[ "$sanitize" != "none" ] && flags+=("-fsanitize=$sanitize")
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
meson install -C "$build" --no-rebuild --destdir "$scratch/root" >/dev/null
pcdir="$(dirname "$(find "$scratch/root" -name paramtree.pc | head -n 1)")"
export PKG_CONFIG_PATH="$pcdir"
export PKG_CONFIG_SYSROOT_DIR="$scratch/root"
static="" kind=shared
[ -f "$(dirname "$pcdir")/libparamtree.a" ] && static="--static" kind=static

# 0. The .pc asks for nothing the public headers do not need: no Requires (only private
# ones, for linking a static library), no -std flag, and it resolves where the header-only
# packages (xtensor, nlohmann-json) have no .pc file at all.
pc="$pcdir/paramtree.pc"
if grep -q '^Requires:' "$pc" || grep -q -- '-std=' "$pc" || grep -Eq 'xtensor|nlohmann' "$pc"; then
    echo "paramtree.pc asks for more than it needs:" >&2
    cat "$pc" >&2
    exit 1
fi
only="$scratch/only-pc"
mkdir -p "$only"
cp "$pc" "$only/"
for p in fmt openblas; do cp "$(PKG_CONFIG_SYSROOT_DIR= pkg-config --variable pcfiledir "$p")/$p.pc" "$only/"; done
PKG_CONFIG_LIBDIR="$only" PKG_CONFIG_PATH="" pkg-config --static --cflags --libs paramtree >/dev/null

# 1. pkg-config by hand.
# shellcheck disable=SC2046
"$CXX" -std=c++20 "${flags[@]}" "$src_dir/main.cpp" -o "$scratch/by_hand" \
    $(pkg-config $static --cflags --libs paramtree)
LD_LIBRARY_PATH="$(dirname "$pcdir")" "$scratch/by_hand"

# 2. A meson project.
meson_flags=()
[ "$sanitize" != "none" ] && meson_flags+=("-Db_sanitize=$sanitize" "-Db_lundef=false")
meson setup "$scratch/meson-build" "$src_dir/meson" "${meson_flags[@]}" \
    -Ddefault_library="$kind" >/dev/null
ninja -C "$scratch/meson-build" >/dev/null
LD_LIBRARY_PATH="$(dirname "$pcdir")" "$scratch/meson-build/consumer"

# 3. A CMake project.
root_prefix="$(cd "$(dirname "$pcdir")/../.." && pwd)" # <destdir>/usr/local
cmake -S "$src_dir/cmake" -B "$scratch/cmake-build" -DCMAKE_PREFIX_PATH="$root_prefix" \
    -DCMAKE_CXX_FLAGS="${flags[*]:-}" >/dev/null
cmake --build "$scratch/cmake-build" >/dev/null
LD_LIBRARY_PATH="$(dirname "$pcdir")" "$scratch/cmake-build/consumer"

# 4. The build tree itself, through meson's uninstalled .pc files (build/meson-uninstalled):
# the same program, compiled against the source tree's headers and the build's library.
uninstalled="$(cd "$build" && pwd)/meson-uninstalled"
# shellcheck disable=SC2046
"$CXX" -std=c++20 "${flags[@]}" "$src_dir/main.cpp" -o "$scratch/uninstalled" \
    $(PKG_CONFIG_PATH="$uninstalled" PKG_CONFIG_SYSROOT_DIR= pkg-config $static --cflags --libs paramtree)
LD_LIBRARY_PATH="$(cd "$build" && pwd)" "$scratch/uninstalled"

# 5. The data-parallel library's package, where it was built: its CMake target links.
if [ -f "$(dirname "$pcdir")/libparamtree_distributed.a" ] ||
   [ -f "$(dirname "$pcdir")/libparamtree_distributed.so" ]; then
    cmake -S "$src_dir/cmake" -B "$scratch/cmake-mpi" -DCMAKE_PREFIX_PATH="$root_prefix" \
        -DCMAKE_CXX_FLAGS="${flags[*]:-}" -DCONSUMER_DISTRIBUTED=ON >/dev/null
    cmake --build "$scratch/cmake-mpi" >/dev/null
    LD_LIBRARY_PATH="$(dirname "$pcdir")" "$scratch/cmake-mpi/consumer_distributed"
fi
