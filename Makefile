# kafkad — the two commands of the README:
#   make run    install what is missing, build, start kafkad on the embedded mock cluster and show it working
#   make test   install, build, start a real Kafka broker, run every suite (also under ASan+UBSan)
# and `make bench` for the benchmarks (not part of `make test`).

BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_CLANG ?= build-clang
VENV       ?= .venv
PY         := $(VENV)/bin/python

.PHONY: all deps build build-asan build-clang stub run test test-c test-python bench clean

all: build

deps:
	@scripts/deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=debugoptimized

$(BUILD_ASAN)/build.ninja:
	meson setup $(BUILD_ASAN) -Db_sanitize=address,undefined -Db_lundef=false --buildtype=debug

build: deps $(BUILD)/build.ninja stub
	@ninja -C $(BUILD)

build-asan: deps $(BUILD_ASAN)/build.ninja
	@ninja -C $(BUILD_ASAN)

# The same sources with clang (-Werror): the code must be warning-free with both compilers.
$(BUILD_CLANG)/build.ninja:
	CC=clang meson setup $(BUILD_CLANG) --buildtype=debugoptimized

build-clang: deps $(BUILD_CLANG)/build.ninja
	@ninja -C $(BUILD_CLANG)

# The Python stub, installed (editable) into the project venv.
stub: deps
	@$(PY) -c 'import kafkad' 2>/dev/null || $(VENV)/bin/pip install -q -e client-stubs/python

run: build
	@scripts/run.sh

test: build build-asan build-clang
	@scripts/test.sh

# Python/C benchmarks and the report (docs/BENCHMARKS.md), then the Go clients'.
bench: build
	@scripts/bench.sh
	@bench/go/run.sh

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_CLANG)
