# spindle's two commands (see README.md):
#   make test   installs what is missing, builds, runs every test: a debug build, an
#               ASan+UBSan build and a TSan build of the whole suite.
#   make bench  installs what is missing, builds a release build, runs the benchmark
#               suite beside its peers and prints the table (QUICK=1: one repetition).
# Other targets: make deps, make build, make serve (the HTTP example), make clean.

MESON ?= meson
comma := ,
BUILD ?= build
JOBS ?= $(shell nproc)
# The ASan+UBSan run also shuffles every loop's ready tasks (Options::shuffle, through
# tests/support.hpp), so no test relies on an order the scheduler does not promise.
# Test builds do not need the benchmark peers or the examples' extra tools.
TEST_OPTS = -Dbenchmarks=false
SAN_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
          UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
          TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:report_signal_unsafe=0:suppressions=$(CURDIR)/tests/tsan.supp

.PHONY: all deps deps-test deps-bench build test test-debug test-asan test-tsan bench serve clean

all: build

deps:
	@scripts/install-deps.sh all
deps-test:
	@scripts/install-deps.sh test
deps-bench:
	@scripts/install-deps.sh bench

# configure DIR, OPTIONS...: (re)configures a build directory only when needed.
define configure
	@if [ ! -f $(1)/build.ninja ]; then $(MESON) setup $(1) $(2) >/dev/null; fi
endef

build: deps-test
	$(call configure,$(BUILD)/debug,--buildtype=debug $(TEST_OPTS))
	$(MESON) compile -C $(BUILD)/debug -j $(JOBS)

test-debug: deps-test
	$(call configure,$(BUILD)/debug,--buildtype=debug $(TEST_OPTS))
	$(MESON) compile -C $(BUILD)/debug -j $(JOBS)
	rm -f $(BUILD)/debug/meson-logs/testlog.json
	$(MESON) test -C $(BUILD)/debug --print-errorlogs --num-processes 2 || true

test-asan: deps-test
	$(call configure,$(BUILD)/asan,--buildtype=debugoptimized -Db_sanitize=address$(comma)undefined -Db_lundef=false $(TEST_OPTS))
	$(MESON) compile -C $(BUILD)/asan -j $(JOBS)
	rm -f $(BUILD)/asan/meson-logs/testlog.json
	$(SAN_ENV) SPINDLE_SHUFFLE=1 $(MESON) test -C $(BUILD)/asan --print-errorlogs --num-processes 2 --suite spindle || true

test-tsan: deps-test
	$(call configure,$(BUILD)/tsan,--buildtype=debugoptimized -Db_sanitize=thread -Db_lundef=false $(TEST_OPTS))
	$(MESON) compile -C $(BUILD)/tsan -j $(JOBS)
	rm -f $(BUILD)/tsan/meson-logs/testlog.json
	$(SAN_ENV) $(MESON) test -C $(BUILD)/tsan --print-errorlogs --num-processes 2 --suite spindle || true

# Every build's results are summed up, and the run fails if any test failed or none ran.
test: test-debug test-asan test-tsan
	@python3 scripts/test_summary.py $(BUILD)/debug $(BUILD)/asan $(BUILD)/tsan

bench: deps-bench
	$(call configure,$(BUILD)/release,--buildtype=release -Dtests=false)
	$(MESON) compile -C $(BUILD)/release -j $(JOBS)
	python3 scripts/bench.py --build $(BUILD)/release

# The HTTP/1.1 plaintext example on 127.0.0.1:$(PORT) with $(WORKERS) worker(s).
PORT ?= 8080
WORKERS ?= 1
serve: deps-test
	$(call configure,$(BUILD)/release,--buildtype=release -Dtests=false)
	$(MESON) compile -C $(BUILD)/release -j $(JOBS) examples/http_server
	$(BUILD)/release/examples/http_server $(PORT) $(WORKERS) 127.0.0.1

clean:
	rm -rf $(BUILD)
