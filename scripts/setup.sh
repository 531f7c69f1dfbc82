#!/usr/bin/env bash
# lvd set-up on Debian 12, as root. One entry point for people and CI:
#   scripts/setup.sh demo   install what is missing, build, run the main job (the demo)
#   scripts/setup.sh test   install what is missing, check the formatting of every C file, build
#                           (-Werror), run the test suite twice: a release build and an
#                           AddressSanitizer + UBSan build, then every libFuzzer target for a few
#                           seconds (clang, tests/fuzz/README.md)
#   scripts/setup.sh deps   only install what is missing
#   scripts/setup.sh build  install and build (build/ holds the executables)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

packages=(
  build-essential pkg-config meson ninja-build clang clang-format-14 libclang-rt-14-dev python3
  libopenblas-dev libjpeg62-turbo-dev libpng-dev libwebp-dev zlib1g-dev
  libsqlite3-dev sqlite3 libcurl4-openssl-dev libarchive-dev libcjson-dev libinih-dev
  libzip-dev libssl-dev libfaiss-dev dpkg-dev g++ libopenmpi-dev openmpi-bin
  mate-backgrounds dataset-fashion-mnist chromium
)

say() { printf '[setup] %s\n' "$*"; }

install_deps() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  else
    say "all Debian packages present"
  fi
  if [ -f scripts/build-faiss-c.sh ]; then
    bash scripts/build-faiss-c.sh
  fi
}

# meson setup or reconfigure DIR with extra options.
configure() {
  local dir=$1; shift
  if [ -f "$dir/build.ninja" ]; then
    meson setup --reconfigure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@"
  fi
}

build_release() {
  configure build -Dwerror=true --buildtype=release
  ninja -C build
}

build_asan() {
  configure build-asan -Dwerror=true --buildtype=debugoptimized \
    -Db_sanitize=address,undefined -Db_lundef=false
  ninja -C build-asan
}

# The libFuzzer targets only (clang, ASan + UBSan), for suite 'fuzz'.
build_fuzz() {
  CC=clang configure build-fuzz -Dfuzz=true --buildtype=debugoptimized \
    -Db_sanitize=address,undefined -Db_lundef=false
  local targets
  targets=$(cd build-fuzz && ninja -t targets all | grep -o '^tests/[a-z]*/fuzz_[a-z]*' | sort -u)
  ninja -C build-fuzz $targets
}

# Runs the suite in DIR; adds its counts to the totals from meson's JSON test log.
passed=0; failed=0; skipped=0
run_suite() {
  local dir=$1 label=$2 rc=0
  shift 2
  say "tests ($label)"
  meson test -C "$dir" --print-errorlogs --num-processes 2 --timeout-multiplier 3 "$@" || rc=$?
  local log="$dir/meson-logs/testlog.json"
  local p f s
  p=$(grep -Ec '"result": "(OK|EXPECTEDFAIL)"' "$log" || true)
  s=$(grep -c '"result": "SKIP"' "$log" || true)
  f=$(grep -Ec '"result": "(FAIL|ERROR|TIMEOUT|UNEXPECTEDPASS)"' "$log" || true)
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); fi
}

# Every C file of the tree formatted as .clang-format says (clang-format-14, the version CI
# installs: another version formats some constructs differently). A file that would change fails.
check_format() {
  say "clang-format check"
  local files
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    files=$(git ls-files --cached --others --exclude-standard '*.c' '*.h')
  else
    files=$(find . -name '*.[ch]' -not -path './build*')
  fi
  if echo "$files" | xargs clang-format-14 --dry-run -Werror; then
    say "formatting: ok"
  else
    say "formatting: run clang-format-14 -i on the files above"
    failed=$((failed + 1))
  fi
}

run_tests() {
  check_format
  build_release
  build_asan
  run_suite build release
  run_suite build-asan "asan+ubsan"
  build_fuzz
  run_suite build-fuzz "fuzz, a few seconds per target" --no-rebuild --suite fuzz
  echo "$passed passed, $failed failed, $skipped skipped"
  [ "$failed" -eq 0 ]
}

run_demo() {
  build_release
  bash pipelines/demo.sh
}

cmd=${1:-}
case "$cmd" in
  deps) install_deps ;;
  build) install_deps; build_release ;;
  test) install_deps; run_tests ;;
  demo) install_deps; run_demo ;;
  *) echo "usage: scripts/setup.sh demo|test|deps|build" >&2; exit 2 ;;
esac
