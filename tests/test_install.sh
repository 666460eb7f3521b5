#!/usr/bin/env bash
# `cmake --install build --prefix DIR`, then DIR moved elsewhere: everything
# installed still works from its new place, with no environment but the
# prefix's own paths:
#   DIR/bin/scry (RPATH $ORIGIN/../lib), pkg-config builds (shared and
#   --static), CMake's find_package(scry) with scry::scry and
#   scry::scry_static, the Python package (finds the library next to it,
#   registers the pytest plugin), the man page scry(1).
set -uo pipefail
SRC=${SCRY_SOURCE_DIR:?SCRY_SOURCE_DIR is not set}
BIN=${SCRY_BINARY_DIR:?SCRY_BINARY_DIR is not set}
unset SCRY_LIB PKG_CONFIG_PATH LD_LIBRARY_PATH PYTHONPATH CGO_CFLAGS CGO_LDFLAGS
WORK=$(mktemp -d /tmp/scry-test-install.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
fails=0
ok()   { echo "ok   - $*"; }
bad()  { echo "FAIL - $*"; fails=$((fails + 1)); }

cmake --install "$BIN" --prefix "$WORK/first" >"$WORK/install.out" 2>&1 \
  && ok "cmake --install --prefix DIR" || { bad "cmake --install"; cat "$WORK/install.out"; exit 1; }
mv "$WORK/first" "$WORK/moved"          # relocatable: nothing may point at the first place
D="$WORK/moved"
LIBDIR=$(cd "$D" && ls -d lib*/pkgconfig | head -1 | xargs dirname)

# --- the CLI ----------------------------------------------------------------
"$D/bin/scry" version >"$WORK/v.out" 2>&1 && grep -q "libscry" "$WORK/v.out" \
  && ok "DIR/bin/scry version: $(cat "$WORK/v.out")" || { bad "DIR/bin/scry does not run"; cat "$WORK/v.out"; }
ldd "$D/bin/scry" | grep libscry | grep -q "$D/" && ok "it loads DIR's libscry" || { bad "it loads another libscry"; ldd "$D/bin/scry" | grep scry; }
readelf -d "$D/bin/scry" | grep -q 'ORIGIN' && ok "RUNPATH is \$ORIGIN-relative" || bad "no \$ORIGIN RUNPATH"
if grep -rq "$WORK/first" "$D" 2>/dev/null; then bad "an installed file names the install prefix: $(grep -rl "$WORK/first" "$D")"
else ok "no installed file names the install prefix"; fi

# --- pkg-config ----------------------------------------------------------------
export PKG_CONFIG_PATH="$D/$LIBDIR/pkgconfig"
[ "$(pkg-config --variable=includedir scry)" -ef "$D/include" ] && ok "scry.pc: includedir follows the prefix" \
  || bad "scry.pc: includedir is $(pkg-config --variable=includedir scry)"
cc -std=c11 -Wall -Werror -o "$WORK/fp" "$SRC/examples/c/fingerprint.c" $(pkg-config --cflags --libs scry) \
   -Wl,-rpath,"$(pkg-config --variable=libdir scry)" && ok "cc \$(pkg-config --cflags --libs scry)" || bad "shared build"
"$WORK/fp" "$SRC/examples/c/queries.sql" >/dev/null && ok "the program runs" || bad "the program does not run"
static_libs=$(pkg-config --static --libs scry) && ok "pkg-config --static --libs scry: $static_libs" || bad "pkg-config --static"
cc -std=c11 -Wall -Werror -o "$WORK/fp-static" "$SRC/examples/c/fingerprint.c" $(pkg-config --cflags scry) \
   "$D/$LIBDIR/libscry.a" ${static_libs/-lscry/} && ok "static libscry.a with --static's Libs.private" || bad "static build"
if ldd "$WORK/fp-static" | grep -q libscry; then bad "the static build loads libscry.so"
else "$WORK/fp-static" "$SRC/examples/c/queries.sql" >/dev/null && ok "the static program runs" || bad "static program"; fi
unset PKG_CONFIG_PATH

# --- CMake find_package ---------------------------------------------------------------
mkdir -p "$WORK/cm"
cat >"$WORK/cm/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.18)
project(consumer C)
find_package(scry 0.1 REQUIRED)
add_executable(fp_shared $SRC/examples/c/fingerprint.c)
target_link_libraries(fp_shared PRIVATE scry::scry)
add_executable(fp_static $SRC/examples/c/fingerprint.c)
target_link_libraries(fp_static PRIVATE scry::scry_static)
CM
cmake -S "$WORK/cm" -B "$WORK/cm/build" -DCMAKE_PREFIX_PATH="$D" >"$WORK/cm.out" 2>&1 \
  && cmake --build "$WORK/cm/build" >>"$WORK/cm.out" 2>&1 \
  && ok "find_package(scry): scry::scry and scry::scry_static build" || { bad "find_package"; cat "$WORK/cm.out"; }
"$WORK/cm/build/fp_static" "$SRC/examples/c/queries.sql" >/dev/null && ok "scry::scry_static program runs" || bad "scry_static program"

# --- Python ------------------------------------------------------------------------------
PYDIR=$(cd "$D" && ls -d lib/python3*/*-packages 2>/dev/null | head -1)
if [ -n "$PYDIR" ]; then
  (cd "$WORK" && PYTHONPATH="$D/$PYDIR" /usr/bin/python3 -c \
     'import scry; print(scry.library_path()); print(scry.version())') >"$WORK/py.out" 2>&1
  grep -q "^$D/" "$WORK/py.out" && ok "python: import scry finds DIR's libscry ($(head -1 "$WORK/py.out"))" \
    || { bad "python: the installed package"; cat "$WORK/py.out"; }
  (cd "$WORK" && PYTHONPATH="$D/$PYDIR" /usr/bin/python3 -m pytest --help) >"$WORK/pyt.out" 2>&1
  grep -q -- "--scry-store" "$WORK/pyt.out" && ok "python: pytest finds the plugin" || bad "python: no pytest plugin"
else
  bad "no Python package installed under DIR/lib"
fi

# --- man page --------------------------------------------------------------------------------
MAN=$(find "$D" -name scry.1 | head -1)
[ -n "$MAN" ] && grep -q "test-migration" "$MAN" && ok "man page scry(1) installed, with every command" || bad "no man page"
if [ -n "$MAN" ] && command -v groff >/dev/null; then
  groff -man -ww -z "$MAN" 2>"$WORK/groff.err" && [ ! -s "$WORK/groff.err" ] && ok "groff renders it without a warning" \
    || { bad "groff warnings"; cat "$WORK/groff.err"; }
fi

echo "$fails failure(s)"
[ $fails = 0 ]
