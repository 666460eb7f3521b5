#!/usr/bin/env bash
# The Go binding's tests (bindings/go), with Debian's golang-go, offline.
set -euo pipefail
lib=${SCRY_LIB:?}
export CGO_CFLAGS="-I$SCRY_SOURCE_DIR/include"
export CGO_LDFLAGS="-L$(dirname "$lib") -Wl,-rpath,$(dirname "$lib")"
export GOPROXY=off GOFLAGS=-mod=mod
export GOCACHE=${GOCACHE:-$SCRY_BINARY_DIR/go-cache}
cd "$SCRY_SOURCE_DIR/bindings/go"
exec go test -count=1 -v ./...
