#!/usr/bin/env bash
# Installs the build into a scratch prefix and builds a tiny consumer against it through
# pkg-config, proving that the installed headers, library and .pc file are complete.
set -euo pipefail
build="$1"
src="$2"
sanitize="${3:-none}"
extra=()
# A sanitized library needs the sanitizer runtime in the consumer too.
[ "$sanitize" != "none" ] && extra+=("-fsanitize=$sanitize")
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
meson install -C "$build" --no-rebuild --destdir "$scratch/root" >/dev/null
pcdir="$(dirname "$(find "$scratch/root" -name paramtree.pc | head -n 1)")"
export PKG_CONFIG_PATH="$pcdir"
export PKG_CONFIG_SYSROOT_DIR="$scratch/root"
# shellcheck disable=SC2046
c++ -std=c++20 "${extra[@]}" "$src" -o "$scratch/consumer" $(pkg-config --cflags --libs paramtree)
"$scratch/consumer"
