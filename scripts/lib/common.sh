# paramtree — shared by scripts/test, scripts/demo, scripts/bench: install what is missing.
# Sourced, not run. Every package comes from Debian; nothing is downloaded at build time.

PT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PT_BUILD_PACKAGES=(g++ meson ninja-build pkg-config ccache python3 libfmt-dev libxtensor-dev
                   xtl-dev libxsimd-dev libxtensor-blas-dev libopenblas-dev catch2)

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

# Configures (once) and builds a meson build directory: pt_build DIR [meson options...]
pt_build() {
    local dir="$1"
    shift
    if [ ! -f "$PT_ROOT/$dir/build.ninja" ]; then
        meson setup "$PT_ROOT/$dir" "$PT_ROOT" "$@" >/dev/null
    fi
    ninja -C "$PT_ROOT/$dir" >/dev/null
}
