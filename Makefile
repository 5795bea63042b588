# cairn build. `make` builds build/cairn and build/libcairn.a; `make test` runs every test;
# `make asan` builds and tests with ASan+UBSan into build-asan/; `make fuzz` builds the fuzzers.
# CUDA sources build when nvcc is found (CUDA=0 to skip); the CPU binary never needs them.

BUILD   ?= build
CC      ?= cc
NVCC    ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA    ?= $(if $(NVCC),1,0)
OPT     ?= -O2 -g
# -pipe: the compiler's intermediates go through pipes, not /tmp (a full /tmp failed a CI build)
CFLAGS  := -pipe -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -fPIC \
           -fno-strict-aliasing -pthread -Isrc $(OPT) $(EXTRA_CFLAGS)
# CPU_LDLIBS: what every binary links; LDLIBS adds the CUDA libraries when CUDA is built.
CPU_LDLIBS := -Wl,-Bstatic -ljansson -lpcre2-8 -lutf8proc -lxxhash -Wl,-Bdynamic \
              -lmicrohttpd -lcurl -lpthread -lm -ldl
LDLIBS  := $(CPU_LDLIBS)
LDFLAGS := -pthread $(EXTRA_LDFLAGS)

comma := ,

# SIMD kernels: files named *_avx2.c / *_avx512.c get their ISA flags (*_avx512_vbmi.c AVX512_VBMI
# too, *_avx512_vnni.c AVX512_VNNI); dispatch is at run time.
AVX2_FLAGS   := -mavx2 -mfma -mf16c
AVX512_FLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mfma -mf16c -mavx2

LIB_SRC  := $(shell find src -name '*.c' -not -path 'src/app/*' | sort)
APP_SRC  := $(sort $(wildcard src/app/*.c))
CU_SRC   := $(sort $(wildcard src/backend/cuda/*.cu))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
APP_OBJ  := $(APP_SRC:%.c=$(BUILD)/obj/%.o)

ifeq ($(CUDA),1)
CUDA_HOME  ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_GENCODE ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
NVCCFLAGS  := -O3 -lineinfo -std=c++17 -Isrc -DCAIRN_HAVE_CUDA $(CUDA_GENCODE) \
              -Xcompiler -Wall,-fno-strict-aliasing,-fPIC $(EXTRA_NVCCFLAGS)
CFLAGS     += -DCAIRN_HAVE_CUDA -I$(CUDA_HOME)/include
LIB_OBJ    += $(CU_SRC:%.cu=$(BUILD)/obj/%.o)
# cuBLAS is opened with dlopen on first use (src/backend/cuda/cublas_load.cu), not linked: its load
# costs every process start about 0.45 CPU seconds, GPU or not. The run path lets dlopen find it.
LDLIBS     += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart_static -ldl -lrt -lstdc++
endif

TEST_SRC := $(sort $(wildcard tests/unit/test_*.c tests/ops/test_*.c tests/model/test_*.c \
                             tests/text/test_*.c tests/engine/test_*.c tests/server/test_*.c \
                             tests/bench/test_*.c))
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
# Corpus replay: each fuzz target linked with tests/fuzz/replay.c (normal compiler), run by `make test`.
REPLAY_BIN := $(patsubst tests/fuzz/fuzz_%.c,$(BUILD)/tests/fuzz/replay_%,$(FUZZ_SRC))
# GPU tests: built by `make test` (so they keep compiling), run only by `make test-cuda`.
CUDA_TEST_SRC := $(if $(filter 1,$(CUDA)),$(sort $(wildcard tests/cuda/test_*.c)))
CUDA_TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(CUDA_TEST_SRC))

# Benchmark tools: bench/*.c against the library; bench/*.cu (GPU ceilings) when CUDA is built.
BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(sort $(wildcard bench/*.c))) \
             $(if $(filter 1,$(CUDA)),$(patsubst bench/%.cu,$(BUILD)/bench/%,$(sort $(wildcard bench/*.cu))))

# Kernel lab (bench/kernels/*.cu, llm.c's dev/cuda way): the production CUDA kernels through the
# backend API against reference kernels, in us, GB/s and TFLOP/s; built with the bench tools.
LAB_BIN := $(if $(filter 1,$(CUDA)),$(patsubst bench/kernels/%.cu,$(BUILD)/bench/kernels/%,$(sort $(wildcard bench/kernels/*.cu))))

.PHONY: all test test-cuda asan fuzz clean format tests bench-tools
all: $(BUILD)/cairn $(BUILD)/libcairn.a

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(if $(findstring _avx512,$<),$(AVX512_FLAGS) $(if $(findstring _vbmi,$<),-mavx512vbmi)$(if $(findstring _vnni,$<), -mavx512vnni),$(if $(findstring _avx2,$<),$(AVX2_FLAGS))) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libcairn.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# A shared build of the library: device runs carry it once instead of one static copy per binary.
$(BUILD)/libcairn.so: $(LIB_OBJ)
	$(CC) -shared $(LDFLAGS) $^ $(subst -Wl$(comma)-Bstatic,,$(LDLIBS)) -o $@

$(BUILD)/cairn: $(APP_OBJ) $(BUILD)/libcairn.a
	$(CC) $(LDFLAGS) $(APP_OBJ) $(BUILD)/libcairn.a $(LDLIBS) -o $@

$(BUILD)/tests/%: tests/%.c $(BUILD)/libcairn.a tests/harness.h $(wildcard tests/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $< $(BUILD)/libcairn.a $(LDFLAGS) $(LDLIBS) -o $@

# A target's replay inputs: its corpus, and for tokenizer_load the seeds its header names.
replay_inputs = tests/fuzz/corpus_$(1)$(if $(filter tokenizer_load,$(1)),:tests/text/golden/synth)

$(BUILD)/tests/fuzz/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c $(BUILD)/libcairn.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DREPLAY_INPUTS='"$(call replay_inputs,$*)"' tests/fuzz/replay.c $< $(BUILD)/libcairn.a \
	    $(LDFLAGS) $(LDLIBS) -o $@

tests: $(TEST_BIN) $(REPLAY_BIN) $(CUDA_TEST_BIN)

bench-tools: $(BENCH_BIN) $(LAB_BIN)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libcairn.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(BUILD)/libcairn.a $(LDFLAGS) $(LDLIBS) -o $@

$(BUILD)/bench/kernels/%: bench/kernels/%.cu $(wildcard bench/kernels/*.cuh) $(BUILD)/libcairn.a
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@.o
	$(CC) $(LDFLAGS) $@.o $(BUILD)/libcairn.a $(LDLIBS) -o $@

$(BUILD)/bench/%: bench/%.cu
	@mkdir -p $(dir $@)
	$(NVCC) -O3 -std=c++17 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=sm_80 $< -lcublasLt -lcublas -o $@

# Every C test binary, every corpus replay and every tests/*/run_*.sh script (black-box tests of
# build/cairn), run in parallel by tests/run_all.sh (on JOBS CPUs, default all of them). What the
# tests download (npm packages, tokenizers: network and disk, little CPU) is fetched in the
# background while the rest builds (tests/fetch_deps.sh; its log is $(BUILD)/fetch_deps.log).
test:
	@mkdir -p $(BUILD)
	@BUILD=$(BUILD) bash tests/fetch_deps.sh > $(BUILD)/fetch_deps.log 2>&1 &
	@$(MAKE) --no-print-directory all tests
	@BUILD=$(BUILD) bash tests/run_all.sh $(TEST_BIN) $(REPLAY_BIN)

# On a GPU machine: the CUDA op tests and every model fixture on the cuda backend.
test-cuda: all $(CUDA_TEST_BIN) $(BUILD)/tests/model/test_fixtures $(BUILD)/tests/model/test_constrained_greedy
	@set -e; for t in $(CUDA_TEST_BIN); do echo "== $$t"; $$t; done
	CAIRN_TEST_BACKENDS=cuda,cuda-precise,cuda-deterministic $(BUILD)/tests/model/test_fixtures
	CAIRN_TEST_BACKENDS=cuda,cuda-deterministic $(BUILD)/tests/model/test_constrained_greedy
	# fp8 decode steps on the tensor-core kernel at the fixtures' short lengths too
	CAIRN_TEST_BACKENDS=cuda CAIRN_CUDA_ATT_MMA_MIN_LEN=1 $(BUILD)/tests/model/test_fixtures

asan:
	$(MAKE) BUILD=build-asan OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	        EXTRA_LDFLAGS="-fsanitize=address,undefined" CUDA=0 test

# `make tsan`: the same with ThreadSanitizer into build-tsan/ (the engine's queue, streams and stats).
.PHONY: tsan
tsan:
	$(MAKE) BUILD=build-tsan OPT="-O1 -g -fsanitize=thread -fno-omit-frame-pointer" \
	        EXTRA_LDFLAGS="-fsanitize=thread" CUDA=0 test

# `make fuzz`: libFuzzer binaries build-fuzz/fuzz_<name> (clang, ASan+UBSan, CPU only). Run one with
# a scratch copy of its corpus (libFuzzer adds what it finds to the first directory given):
#     cp -r tests/fuzz/corpus_jinja /tmp/cj && build-fuzz/fuzz_jinja /tmp/cj -max_total_time=600
fuzz:
	$(MAKE) BUILD=build-fuzz CC=clang CUDA=0 OPT="-O1 -g -fsanitize=fuzzer-no-link,address,undefined" build-fuzz/libcairn.a
	for f in $(FUZZ_SRC); do clang -std=c11 -D_GNU_SOURCE -Isrc -O1 -g -fsanitize=fuzzer,address,undefined $$f \
	    build-fuzz/libcairn.a $(CPU_LDLIBS) -o build-fuzz/$$(basename $$f .c) || exit 1; done

format:
	clang-format -i $(LIB_SRC) $(APP_SRC)

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
