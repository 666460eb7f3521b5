#!/usr/bin/env bash
# The Go binding's tests (bindings/go), with Debian's golang-go, offline, and
# nothing but PKG_CONFIG_PATH to find libscry (the build tree's
# scry-uninstalled.pc): what a user of an installed libscry sets. Also go vet.
set -euo pipefail
unset CGO_CFLAGS CGO_LDFLAGS SCRY_LIB
export PKG_CONFIG_PATH="$SCRY_BINARY_DIR/pkgconfig"
export GOPROXY=off GOFLAGS=-mod=mod
export GOCACHE=${GOCACHE:-$SCRY_BINARY_DIR/go-cache}
cd "$SCRY_SOURCE_DIR/bindings/go"
go vet ./...
echo "ok   - go vet ./..."
unformatted=$(gofmt -l . "$SCRY_SOURCE_DIR/examples/go")
[ -z "$unformatted" ] || { echo "FAIL - not gofmt'ed: $unformatted"; exit 1; }
echo "ok   - gofmt"
exec go test -count=1 -v ./...
