# paramtree — shared by scripts/test, scripts/demo, scripts/bench: install what is missing.
# Sourced, not run. Every package comes from Debian; nothing is downloaded at build time.

PT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Per user, not per clone: a fresh clone (CI on this machine) reuses what earlier builds
# compiled; a new machine starts cold.
export CCACHE_DIR="${CCACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/paramtree-ccache}"
# Sources are named relative to the build directory, so a clone elsewhere compiles the same
# commands: do not key the cache on the directory (only debug info's paths would differ).
export CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-1}"
PT_BUILD_PACKAGES=(g++ meson ninja-build pkg-config ccache python3 libfmt-dev libxtensor-dev
                   xtl-dev libxsimd-dev libopenblas-dev libdnnl-dev nlohmann-json3-dev
                   librange-v3-dev python3-numpy catch2 locales libcli11-dev doxygen
                   gnuplot-nox libopenmpi-dev openmpi-bin clang-format git)

# Installs the named Debian packages that are not installed yet (apt-get update first, once).
pt_ensure_packages() {
    local missing=()
    local p
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$p")
        fi
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    echo "installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Configures (once) and builds a meson build directory:
#   pt_build DIR [meson options...] [-- ninja targets...]   (no targets: everything)
pt_build() {
    local dir="$1"
    shift
    local options=() targets=()
    while [ $# -gt 0 ]; do
        if [ "$1" = "--" ]; then
            shift
            targets=("$@")
            break
        fi
        options+=("$1")
        shift
    done
    if [ ! -f "$PT_ROOT/$dir/build.ninja" ]; then
        meson setup "$PT_ROOT/$dir" "$PT_ROOT" "${options[@]}" >/dev/null
    fi
    local log
    if ! log="$(ninja -C "$PT_ROOT/$dir" "${targets[@]}" 2>&1)"; then
        printf '%s\n' "$log" | grep -E -A8 'error|FAILED' | head -n 60 >&2
        echo "build failed in $dir" >&2
        return 1
    fi
}
