# scry - the two commands of the README's Quick start, and a few more.
#
#   make demo    install what is missing, build, and run `scry demo`
#   make test    install what is missing, build, run the test suite (ctest),
#                then the C tests again under AddressSanitizer+UBSan
#   make build   configure and build into ./build
#   make bench   build and run the benchmarks (see docs/benchmarks.md)
#
# When run as root on Debian, missing packages are installed with apt-get;
# otherwise the one apt-get line to run is printed.

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

# Debian packages: build, tests (a real PostgreSQL server and real clients).
PKGS       := cmake make gcc pkg-config libpq-dev libpg-query-dev libxxhash-dev \
              libsqlite3-dev zlib1g-dev check postgresql postgresql-client \
              python3 python3-psycopg2 sqlite3 procps golang-go \
              abigail-tools binutils \
              python3-asyncpg default-jdk-headless libpostgresql-jdbc-java \
              golang-github-jackc-pgx-v4-dev nodejs
BENCH_PKGS := pgbouncer pgreplay hyperfine

.PHONY: all deps bench-deps build build-asan test test-asan demo bench clean abi-dump

all: build

deps:
	@./tools/ensure-packages $(PKGS)

bench-deps:
	@./tools/ensure-packages $(PKGS) $(BENCH_PKGS)

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSCRY_SANITIZE=ON -DSCRY_BUILD_BENCH=OFF $(CMAKE_FLAGS)

build-asan: deps $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)

# CI (CI=true) builds with warnings as errors.
ifeq ($(CI),true)
CMAKE_FLAGS += -DSCRY_WERROR=ON
endif

test: build build-asan
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
	rm -rf $(BUILD) $(ASAN_BUILD)
