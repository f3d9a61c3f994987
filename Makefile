# spindle's two commands (see README.md):
#   make test   installs what is missing, builds, runs every test: a debug build, an
#               ASan+UBSan build and a TSan build of the whole suite.
#   make bench  installs what is missing, builds a release build, runs the benchmark
#               suite beside its peers and prints the table (QUICK=1: one repetition;
#               the contended rows three).
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

.PHONY: all deps deps-test deps-bench build test test-debug test-asan test-tsan test-consumer bench serve clean

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
test: test-debug test-asan test-tsan test-consumer
	@python3 scripts/test_summary.py $(BUILD)/debug $(BUILD)/asan $(BUILD)/tsan $(CONSUMER)/installed $(CONSUMER)/subproject $(CONSUMER)/cmake

# tests/consumer/, a program outside the tree, built against spindle three ways: against
# a staged `meson install` of the debug build (found with pkg-config through
# PKG_CONFIG_PATH; PKG_CONFIG_SYSROOT_DIR maps the .pc's /usr/local paths into the
# stage), with spindle as a wrap-less meson subproject (a source dir under $(CONSUMER)
# holding subprojects/spindle -> this tree), each a meson test; and with CMake against
# the same stage (find_package(spindle) through CMAKE_PREFIX_PATH = the staged prefix),
# a ctest test whose JUnit file scripts/test_summary.py reads.
CONSUMER = $(BUILD)/consumer
test-consumer: deps-test
	$(call configure,$(BUILD)/debug,--buildtype=debug $(TEST_OPTS))
	rm -rf $(CONSUMER)/stage $(CONSUMER)/installed
	$(MESON) install -C $(BUILD)/debug --destdir $(CURDIR)/$(CONSUMER)/stage --quiet
	PKG_CONFIG_PATH=$$(dirname $$(find $(CURDIR)/$(CONSUMER)/stage -name spindle.pc)) \
	  PKG_CONFIG_SYSROOT_DIR=$(CURDIR)/$(CONSUMER)/stage \
	  $(MESON) setup $(CONSUMER)/installed tests/consumer --wrap-mode=nofallback >/dev/null
	$(MESON) test -C $(CONSUMER)/installed --print-errorlogs || true
	mkdir -p $(CONSUMER)/src/subprojects
	ln -sfn $(CURDIR)/tests/consumer/meson.build $(CURDIR)/tests/consumer/consumer.cpp \
	  $(CURDIR)/tests/consumer/compile_check.py $(CONSUMER)/src/
	ln -sfn $(CURDIR) $(CONSUMER)/src/subprojects/spindle
	$(call configure,$(CONSUMER)/subproject,$(CONSUMER)/src --force-fallback-for=spindle)
	rm -f $(CONSUMER)/subproject/meson-logs/testlog.json
	$(MESON) test -C $(CONSUMER)/subproject --print-errorlogs || true
	rm -rf $(CONSUMER)/cmake
	cmake -S tests/consumer -B $(CONSUMER)/cmake >/dev/null \
	  -DCMAKE_PREFIX_PATH=$(CURDIR)/$(CONSUMER)/stage$$($(MESON) introspect --buildoptions $(BUILD)/debug | \
	    python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"))')
	cmake --build $(CONSUMER)/cmake
	cd $(CONSUMER)/cmake && ctest --output-on-failure --output-junit $(CURDIR)/$(CONSUMER)/cmake/junit.xml || true

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

# make fuzz SECONDS=N: builds the libFuzzer targets of tests/fuzz/ with clang and runs
# each for N seconds (default 30); an input that breaks one is kept in
# tests/fuzz/regressions/, which `make test` replays.
fuzz: SECONDS ?= 30
fuzz:
	@scripts/install-deps.sh fuzz
	tests/fuzz/run.sh $(BUILD)/fuzz $(SECONDS)
.PHONY: fuzz

# make soak SECONDS=N: the randomised soak test (tests/stress/soak.cpp) for N seconds
# (default 60, split over 1, 2, 4 and 8 workers) in the debug build; it prints its seed
# first, and SEED=S replays a run's choices.
soak: SECONDS ?= 60
soak: deps-test
	$(call configure,$(BUILD)/debug,--buildtype=debug $(TEST_OPTS))
	$(MESON) compile -C $(BUILD)/debug -j $(JOBS) tests/soak
	SOAK_SECONDS=$(SECONDS) $(if $(SEED),SOAK_SEED=$(SEED)) $(BUILD)/debug/tests/soak
.PHONY: soak

clean:
	rm -rf $(BUILD)
