# scry - the two commands of the README's Quick start, and a few more.
#
#   make demo    install what is missing, build, and run `scry demo`
#   make test    install what is missing, build, run the test suite (ctest),
#                then the C tests again under AddressSanitizer+UBSan
#   make build   configure and build into ./build
#   make bench   build and run the benchmarks (see docs/benchmarks.md)
#   make fuzz    build the fuzz targets with clang's libFuzzer and run each
#                for FUZZ_SECONDS (default 60; see docs/testing.md)
#
# When run as root on Debian, missing packages are installed with apt-get;
# otherwise the one apt-get line to run is printed.

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

# Debian packages: build, tests (a real PostgreSQL server and real clients).
PKGS       := cmake make gcc pkg-config libpq-dev libpg-query-dev libxxhash-dev \
              libsqlite3-dev zlib1g-dev libbz2-dev liblzma-dev libzstd-dev libssl-dev openssl check postgresql postgresql-client \
              python3 python3-psycopg2 sqlite3 procps golang-go \
              abigail-tools binutils pgreplay locales \
              python3-venv python3-pip python3-setuptools python3-pytest python3-alembic \
              python3-sqlalchemy python3-django python3-yaml groff-base \
              python3-asyncpg default-jdk-headless libpostgresql-jdbc-java \
              golang-github-jackc-pgx-v4-dev nodejs
TEST_PKGS  := chromium
BENCH_PKGS := pgbouncer pgreplay hyperfine time
FUZZ_PKGS  := clang libclang-rt-14-dev
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60

.PHONY: all deps test-deps bench-deps fuzz-deps build build-asan build-fuzz test test-asan demo bench fuzz clean abi-dump

all: build

deps:
	@./tools/ensure-packages $(PKGS)

# What only the tests need (headless Chromium opens the HTML report).
test-deps:
	@./tools/ensure-packages $(PKGS) $(TEST_PKGS)

bench-deps:
	@./tools/ensure-packages $(PKGS) $(BENCH_PKGS)

fuzz-deps:
	@./tools/ensure-packages $(PKGS) $(FUZZ_PKGS)

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSCRY_SANITIZE=ON -DSCRY_BUILD_BENCH=OFF $(CMAKE_FLAGS)

build-asan: deps $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)

$(FUZZ_BUILD)/CMakeCache.txt:
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSCRY_FUZZ=ON \
	  -DSCRY_BUILD_BENCH=OFF $(CMAKE_FLAGS)

build-fuzz: fuzz-deps $(FUZZ_BUILD)/CMakeCache.txt
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_pgwire fuzz_fingerprint fuzz_logimport fuzz_logprefix fuzz_store

fuzz: build-fuzz
	./tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# CI (CI=true) builds with warnings as errors.
ifeq ($(CI),true)
CMAKE_FLAGS += -DSCRY_WERROR=ON
endif

test: test-deps build build-asan
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) --no-print-directory test-asan

test-asan: build-asan
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -L unit -j $(JOBS)

# On a release: the ABI dump tests/test_abi.sh compares later builds with
# (docs/api.md, "Versioning"). Needs a -g build (RelWithDebInfo, the default).
ABI_VERSION := $(shell grep -m1 -o 'scry VERSION [0-9]*\.[0-9]*' CMakeLists.txt | cut -d' ' -f3)
abi-dump: build
	./tools/abi-dump $(BUILD)/libscry.so abi/libscry-$(ABI_VERSION).abi
	@echo "wrote abi/libscry-$(ABI_VERSION).abi: commit it with the release"

demo: build
	./$(BUILD)/scry demo

bench: bench-deps build
	./bench/run-all.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
