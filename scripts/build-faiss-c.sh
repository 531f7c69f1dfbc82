#!/bin/bash
# Builds the FAISS C API (libfaiss_c.a) that Debian 12's libfaiss-dev lacks.
#
# Run as root at set-up time, after libfaiss-dev, dpkg-dev and g++ are installed. It fetches the
# Debian source of the installed faiss version (enabling deb-src for the same mirrors as
# /etc/apt/sources.list.d/debian.sources), compiles upstream's c_api/ (without gpu/) against the
# installed headers and installs:
#   /usr/local/lib/libfaiss_c.a
#   /usr/local/include/faiss/c_api/*.h   (upstream layout: <faiss/c_api/Index_c.h>)
# It does nothing when a faiss_c library is already present, so it is safe to run again.
set -euo pipefail

prefix=/usr/local
lib="$prefix/lib/libfaiss_c.a"
debian_sources=/etc/apt/sources.list.d/debian.sources
srclist=/etc/apt/sources.list.d/lvd-deb-src.sources

die() {
    echo "build-faiss-c.sh: $*" >&2
    exit 1
}

have_faiss_c() {
    pkg-config --exists faiss_c 2>/dev/null && return 0
    compgen -G "$prefix/lib/libfaiss_c.*" >/dev/null
}

# Writes deb-src stanzas mirroring the deb stanzas of debian.sources (URIs, suites, components,
# keys) unless deb-src is already listed, then refreshes apt when it does not know faiss's source.
enable_deb_src() {
    [ -r "$debian_sources" ] || die "$debian_sources not found; cannot derive deb-src entries"
    if ! grep -Eqs '^Types:.*deb-src' "$debian_sources" "$srclist"; then
        sed -E 's/^Types:.*/Types: deb-src/' "$debian_sources" >"$srclist.tmp"
        mv "$srclist.tmp" "$srclist"
        echo "build-faiss-c.sh: wrote $srclist"
    fi
    if ! apt-cache showsrc faiss 2>/dev/null | grep -q '^Package: faiss'; then
        echo "build-faiss-c.sh: running apt-get update"
        apt-get update -qq || die "apt-get update failed (network or $srclist)"
    fi
}

if have_faiss_c; then
    echo "build-faiss-c.sh: faiss_c already installed, nothing to do"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "must run as root (writes $prefix and apt sources)"
[ -r /usr/include/faiss/Index.h ] || die "/usr/include/faiss/Index.h missing: apt-get install libfaiss-dev"
command -v dpkg-source >/dev/null || die "dpkg-source missing: apt-get install dpkg-dev"
command -v g++ >/dev/null || die "g++ missing: apt-get install g++"
command -v ar >/dev/null || die "ar missing: apt-get install binutils"

version=$(dpkg-query -W -f='${source:Version}' libfaiss-dev 2>/dev/null) ||
    die "libfaiss-dev is not installed: apt-get install libfaiss-dev"

enable_deb_src

work=$(mktemp -d /tmp/lvd-faiss-c.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
echo "build-faiss-c.sh: fetching faiss source $version"
apt-get source -qq "faiss=$version" >apt-source.log 2>&1 || {
    cat apt-source.log >&2
    die "apt-get source faiss=$version failed"
}
src=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'faiss-*' | head -n 1)
if [ -z "$src" ] || [ ! -d "$src/c_api" ]; then
    die "no c_api/ folder in the faiss source under $work"
fi

mapfile -t sources < <(cd "$src/c_api" && find . -name '*.cpp' -not -path './gpu/*' | sort)
[ "${#sources[@]}" -gt 0 ] || die "no c_api sources found in $src/c_api"

echo "build-faiss-c.sh: compiling ${#sources[@]} c_api sources"
mkdir -p obj
# One object per source (c_api/impl/X.cpp -> obj/impl_X.o), compiled in parallel.
compile_one() {
    local obj
    obj="obj/$(echo "${1#./}" | tr / _)"
    g++ -std=c++17 -O2 -fPIC -DNDEBUG -c "$src/c_api/$1" -o "${obj%.cpp}.o"
}
export -f compile_one
export src
# shellcheck disable=SC2016 # $1 is expanded by the inner bash, on purpose
printf '%s\0' "${sources[@]}" | xargs -0 -n 1 -P "$(nproc)" bash -c 'compile_one "$1"' _ ||
    die "compiling the c_api sources failed"

ar rcs "$work/libfaiss_c.a" obj/*.o
install -d "$prefix/lib" "$prefix/include/faiss/c_api"
(cd "$src/c_api" && find . -name '*.h' -not -path './gpu/*' -exec install -D -m 644 {} \
    "$prefix/include/faiss/c_api/{}" \;)
# Install the archive last and atomically: its presence marks a complete build.
install -m 644 "$work/libfaiss_c.a" "$lib.tmp"
mv "$lib.tmp" "$lib"
echo "build-faiss-c.sh: installed $lib and $prefix/include/faiss/c_api"
