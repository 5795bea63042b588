#!/usr/bin/env bash
# llama.cpp measured beside cairn in the same run, on the same synthetic weights (issues 16 and 17).
# llama.cpp is never part of our tree: this script fetches the source that the node-llama-cpp npm
# package bundles (a git bundle of a llama.cpp release), builds it outside git, converts cairn's
# synthetic checkpoints with llama.cpp's own convert_hf_to_gguf.py and llama-quantize, and runs
# llama-bench beside bench/model_bench.
#
#   bash bench/peer_llamacpp.sh fetch [DIR]            npm pack node-llama-cpp@$NLC_VERSION, extract its
#                                                      llama.cpp into DIR/llama.cpp (+ DIR/llama.cpp-src.tar.xz
#                                                      to carry to a machine with no network)
#   bash bench/peer_llamacpp.sh build [DIR] [--cuda]   Release build of llama-bench, llama-quantize,
#                                                      llama-server into DIR/build-cpu (native) or DIR/build-cuda (sm_90)
#   bash bench/peer_llamacpp.sh convert MODEL OUT.gguf TYPE
#                                                      MODEL: a safetensors dir (TYPE f16|bf16, or a quant type via
#                                                      a bf16 GGUF made next to OUT) or a .gguf (quantized by llama-quantize);
#                                                      TYPE: f16 bf16 q8_0 q4_0 q4_k_m
#   bash bench/peer_llamacpp.sh row GGUF THREADS BW_GBS  one llama-bench prefill + decode line pair (cpu_bench.sh)
#   bash bench/peer_llamacpp.sh cpu [OUT_DIR]          CPU comparison on this host (THREADS=2, REPS=3, interleaved)
#   bash bench/peer_llamacpp.sh cuda [OUT_DIR]         GPU comparison, Qwen3-8B shape (run on the GPU machine)
#
# DIR is $LLAMACPP_DIR (default .peer/llamacpp, git-ignored); cairn binaries come from $BUILD (default
# build, `make bench-tools build/cairn`); the Qwen3 tokenizer from $TOKENIZER (default
# $BUILD/tokenizers/qwen3, tests/text/fetch_tokenizers.sh); models are written under $WORK.
# Python: the converter needs numpy, torch and tqdm (Debian: apt-get install python3-numpy python3-torch
# python3-tqdm) and transformers, which Debian lacks: bench/peer_shim stands in where a package is
# missing (run_convert.py: Debian's torch 1.13; transformers' two calls answered by cairn's tokenizer;
# sentencepiece's import). Where the real packages are installed (the GPU machine), they are used.
set -euo pipefail
NLC_VERSION=3.22.1   # node-llama-cpp release whose bundled llama.cpp we build (tag v0.5.0, ggml 0.25.1)
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${BUILD:-build}
LLAMACPP_DIR=${LLAMACPP_DIR:-.peer/llamacpp}
TOKENIZER=${TOKENIZER:-$BUILD/tokenizers/qwen3}
PY=${PY:-}
if [ -z "$PY" ]; then   # the first Python with numpy and torch: python3 on the GPU machine, Debian's here
    for p in python3 /usr/bin/python3; do
        "$p" -c 'import numpy, torch' 2>/dev/null && { PY=$p; break; }
    done
    PY=${PY:-python3}
fi
export CAIRN_LOG=${CAIRN_LOG:-error}

die() { echo "peer_llamacpp: $*" >&2; exit 1; }

# ==== fetch / build ====

cmd_fetch() {
    local dir=${1:-$LLAMACPP_DIR}
    mkdir -p "$dir" && dir=$(cd "$dir" && pwd)
    local tgz="$dir/node-llama-cpp-$NLC_VERSION.tgz"
    [ -f "$tgz" ] || (cd "$dir" && npm pack --silent "node-llama-cpp@$NLC_VERSION" >/dev/null)
    # The package keeps its llama.cpp as llama/gitRelease.bundle (a one-commit git bundle of the
    # release named in llama/llama.cpp.info.json); its own patches (llama/patches) are not applied.
    rm -rf "$dir/pkg" "$dir/llama.cpp" && mkdir -p "$dir/pkg"
    tar -xzf "$tgz" -C "$dir/pkg" package/llama/gitRelease.bundle package/llama/llama.cpp.info.json
    git clone -q "$dir/pkg/package/llama/gitRelease.bundle" "$dir/llama.cpp" 2>/dev/null
    local tag commit
    tag=$(sed -n 's/.*"tag": *"\([^"]*\)".*/\1/p' "$dir/pkg/package/llama/llama.cpp.info.json")
    commit=$(git -C "$dir/llama.cpp" rev-parse HEAD)
    echo "node-llama-cpp@$NLC_VERSION llama.cpp tag=$tag bundle_commit=$commit" | tee "$dir/VERSION"
    # What a machine with no network needs, small enough to carry: the tree without .git, the
    # tokenizer test vocabularies (models/), docs and media.
    tar -C "$dir" --exclude=.git --exclude=llama.cpp/models --exclude=llama.cpp/docs --exclude=llama.cpp/media \
        -cJf "$dir/llama.cpp-src.tar.xz" llama.cpp
    rm -rf "$dir/pkg"
    du -h "$dir/llama.cpp-src.tar.xz"
}

cmd_build() {
    local dir=$LLAMACPP_DIR cuda=0
    for a in "$@"; do
        if [ "$a" = --cuda ]; then cuda=1; else dir=$a; fi
    done
    if [ ! -d "$dir/llama.cpp" ]; then
        [ -f "$dir/llama.cpp-src.tar.xz" ] || die "no $dir/llama.cpp: run fetch first"
        tar -C "$dir" -xJf "$dir/llama.cpp-src.tar.xz"
    fi
    local b="$dir/build-cpu" flags=(-DGGML_NATIVE=ON)
    if [ $cuda = 1 ]; then
        b="$dir/build-cuda"
        flags=(-DGGML_NATIVE=ON -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90)
    fi
    local gen=()
    command -v ninja >/dev/null && gen=(-G Ninja)
    cmake -S "$dir/llama.cpp" -B "$b" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF "${flags[@]}" >"$b.cmake.log" 2>&1 ||
        { tail -20 "$b.cmake.log"; die "cmake failed ($b.cmake.log)"; }
    cmake --build "$b" -j"$(nproc)" --target llama-bench llama-quantize >"$b.build.log" 2>&1 ||
        { tail -20 "$b.build.log"; die "build failed ($b.build.log)"; }
    # The server comes last and alone: the benchmarks above do not need it
    cmake --build "$b" -j"$(nproc)" --target llama-server >>"$b.build.log" 2>&1 ||
        echo "peer_llamacpp: llama-server did not build ($b.build.log); llama-bench and llama-quantize did" >&2
    "$b/bin/llama-bench" --version 2>&1 | sed -n 1,2p
}

llama_bin() {   # the first build that has it: cpu, then cuda
    for b in build-cpu build-cuda; do
        [ -x "$LLAMACPP_DIR/$b/bin/$1" ] && { echo "$LLAMACPP_DIR/$b/bin/$1"; return; }
    done
    die "no $1 under $LLAMACPP_DIR/build-*: run build first"
}

# ==== convert ====

convert_py() {   # MODEL_DIR OUT.gguf f16|bf16: llama.cpp's own converter (through peer_shim/run_convert.py)
    local src="$LLAMACPP_DIR/llama.cpp"
    [ -f "$src/convert_hf_to_gguf.py" ] || die "no $src/convert_hf_to_gguf.py: run fetch first"
    if [ ! -f "$1/tokenizer.json" ]; then   # a checkpoint synthesized without --tokenizer: give it the real one
        [ -f "$TOKENIZER/tokenizer.json" ] || die "$1 has no tokenizer.json, nor has $TOKENIZER"
        cp "$TOKENIZER"/tokenizer.json "$TOKENIZER"/tokenizer_config.json "$1/"
    fi
    export CAIRN_BIN=${CAIRN_BIN:-$(cd "$(dirname "$BUILD/cairn")" && pwd)/cairn}   # for the transformers stand-in
    "$PY" "$HERE/peer_shim/run_convert.py" "$src/convert_hf_to_gguf.py" "$1" --outtype "$3" --outfile "$2" \
        >"$2.log" 2>&1 || { tail -20 "$2.log"; die "convert_hf_to_gguf.py failed ($2.log)"; }
}

cmd_convert() {
    [ $# = 3 ] || die "usage: convert MODEL_DIR|IN.gguf OUT.gguf f16|bf16|q8_0|q4_0|q4_k_m"
    local model=$1 out=$2 type=${3,,}
    case $type in
    f16 | bf16)
        [ -d "$model" ] || die "$model: f16/bf16 come from a safetensors directory"
        convert_py "$model" "$out" "$type" ;;
    q8_0 | q4_0 | q4_k_m)
        local in=$model
        if [ -d "$model" ]; then   # a bf16 GGUF beside OUT first: the synthetic weights as they are
            in="${out%.gguf}.bf16-src.gguf"
            convert_py "$model" "$in" bf16
        fi
        "$(llama_bin llama-quantize)" "$in" "$out" "${type^^}" >"$out.log" 2>&1 ||
            { tail -20 "$out.log"; die "llama-quantize failed ($out.log)"; }
        [ "$in" = "$model" ] || rm -f "$in" ;;
    *) die "unknown type $type (f16 bf16 q8_0 q4_0 q4_k_m)" ;;
    esac
    echo "$out $(stat -c %s "$out") bytes"
}

# ==== models and measurements shared by cpu and cuda ====

synth() {   # CONFIG_NAME: the bf16 checkpoint at $WORK/NAME, with the real Qwen3 tokenizer
    [ -f "$TOKENIZER/tokenizer.json" ] || die "no $TOKENIZER/tokenizer.json (tests/text/fetch_tokenizers.sh)"
    [ -d "$WORK/$1" ] && return
    rm -rf "$WORK/$1.part"   # outputs appear whole or not at all: a call cut off by a time limit can be repeated
    "$BUILD/cairn" synth --config "configs/$1.json" --out "$WORK/$1.part" --seed 1 --tokenizer "$TOKENIZER" >/dev/null
    mv "$WORK/$1.part" "$WORK/$1"
}

gguf() {   # SRC OUT TYPE, once
    [ -f "$2" ] && return
    cmd_convert "$1" "${2%.gguf}.part.gguf" "$3" >/dev/null
    mv "${2%.gguf}.part.gguf" "$2"
}

cairn_quant() {   # NAME BITS: cairn quantize, affine, group 64, once
    [ -d "$WORK/$1-q$2" ] && return
    rm -rf "$WORK/$1-q$2.part"
    "$BUILD/cairn" quantize "$WORK/$1" "$WORK/$1-q$2.part" --bits "$2" --group-size 64 >/dev/null 2>&1
    mv "$WORK/$1-q$2.part" "$WORK/$1-q$2"
}

# Bytes a decode step at position POS reads from a GGUF: every tensor but the embedding table (one
# row) when the output matrix is separate, all of them when the embedding is the output (tied), plus
# the f16 KV cache up to POS. Read with llama.cpp's own gguf-py.
gguf_decode_bytes() {   # GGUF POS
    PYTHONPATH="$LLAMACPP_DIR/llama.cpp/gguf-py" "$PY" - "$1" "$2" <<'PY'
import sys
from gguf import GGUFReader
r = GGUFReader(sys.argv[1])
t = {x.name: int(x.n_bytes) for x in r.tensors}
f = {k: r.fields[k] for k in r.fields}
def val(key):
    fld = f[key]
    return int(fld.parts[fld.data[0]][0])
arch = bytes(f['general.architecture'].parts[f['general.architecture'].data[0]]).decode()
n_layer, n_kv = val(f'{arch}.block_count'), val(f'{arch}.attention.head_count_kv')
head_dim = val(f'{arch}.attention.key_length')
w = sum(t.values()) - (t['token_embd.weight'] if 'output.weight' in t else 0)
print(w + n_layer * n_kv * head_dim * 2 * 2 * int(sys.argv[2]))
PY
}

# ==== cpu ====

# bench/cpu_bench.sh's llama.cpp column: llama-bench on GGUF at THREADS threads, printed the way
# model_bench prints (prefill: best of 3 runs of 512 tokens; decode: 128 tokens after 512), with the
# roofline of the GGUF's bytes per token at the bandwidth BW_GBS measured by the caller.
cmd_row() {   # GGUF THREADS BW_GBS
    [ $# = 3 ] || die "usage: row GGUF THREADS BW_GBS"
    local lb pp tg bytes
    lb=$(llama_bin llama-bench)
    pp=$("$lb" -m "$1" -t "$2" -p 512 -n 0 -r 3 -o jsonl 2>/dev/null)
    tg=$("$lb" -m "$1" -t "$2" -p 0 -n 128 -d 512 -r 1 -o jsonl 2>/dev/null)
    bytes=$(gguf_decode_bytes "$1" 576)
    "$PY" - "$pp" "$tg" "$bytes" "$3" <<'PY'
import json, sys
pp, tg = json.loads(sys.argv[1]), json.loads(sys.argv[2])
b, bw = float(sys.argv[3]), float(sys.argv[4]) * 1e9
print(f"llama.cpp prefill tokens=512 tok_s={max(pp['samples_ts']):.1f}")
print(f"llama.cpp decode ctx=512 gen=128 tok_s={tg['avg_ts']:.2f} bytes_per_tok={b:.0f} "
      f"roofline_tok_s={bw / b:.1f} frac_roofline={tg['avg_ts'] * b / bw:.3f}")
PY
}

# One interleaved pair: cairn's model_bench on DIR, then llama-bench on GGUF, prefill 512 (best of 3
# inside each tool) and 128 decode steps after a 512-token prompt, both at $THREADS threads.
cpu_pair() {   # LABEL CAIRN_DIR GGUF REP
    local log="$OUT/$1.txt" bw
    echo "== $1 rep $4 $(date -u +%H:%M:%S) load: $(uptime | sed 's/.*load average: //')" | tee -a "$log"
    bw=$("$BUILD/bench/membw" "$THREADS" | tail -1 | sed -n 's/.* \([0-9.]*\)GB\/s/\1/p')
    echo "membw threads=$THREADS read_bandwidth=${bw}GB/s" | tee -a "$log"
    "$BUILD/bench/model_bench" "$2" --backend cpu --threads "$THREADS" --prefill 512 --decode-ctx 512 --gen 128 \
        --bytes-per-s "$(awk "BEGIN{print $bw * 1e9}")" 2>&1 | grep -E '^(prefill|decode)' | sed 's/^/cairn /' | tee -a "$log"
    "$LB" -m "$3" -t "$THREADS" -p 512 -n 0 -r 3 -o jsonl 2>/dev/null | sed 's/^/llama.cpp /' | tee -a "$log"
    "$LB" -m "$3" -t "$THREADS" -p 0 -n 128 -d 512 -r 1 -o jsonl 2>/dev/null | sed 's/^/llama.cpp /' | tee -a "$log"
    echo "llama.cpp decode_bytes_per_tok=$(gguf_decode_bytes "$3" 576)" | tee -a "$log"   # middle of 512..640
}

cmd_cpu() {
    OUT=${1:-bench/results/cpu-peer-$(date -u +%F)}
    WORK=${WORK:-/tmp/cairn-peer}
    THREADS=${THREADS:-2}
    local reps=${REPS:-3}
    mkdir -p "$OUT" "$WORK"
    for b in cairn bench/model_bench bench/membw; do
        [ -x "$BUILD/$b" ] || die "no $BUILD/$b: make CUDA=0 bench-tools $BUILD/cairn"
    done
    LB=$(llama_bin llama-bench)
    synth qwen3-1.7b && synth qwen3-0.6b
    if [ ! -d "$WORK/qwen3-1.7b-f16" ]; then
        "$PY" "$HERE/st_to_f16.py" "$WORK/qwen3-1.7b" "$WORK/qwen3-1.7b-f16.part"
        mv "$WORK/qwen3-1.7b-f16.part" "$WORK/qwen3-1.7b-f16"
    fi
    gguf "$WORK/qwen3-1.7b" "$WORK/qwen3-1.7b-bf16.gguf" bf16
    gguf "$WORK/qwen3-1.7b" "$WORK/qwen3-1.7b-f16.gguf" f16
    gguf "$WORK/qwen3-0.6b" "$WORK/qwen3-0.6b-bf16.gguf" bf16
    gguf "$WORK/qwen3-0.6b-bf16.gguf" "$WORK/qwen3-0.6b-q8_0.gguf" q8_0
    gguf "$WORK/qwen3-0.6b-bf16.gguf" "$WORK/qwen3-0.6b-q4_0.gguf" q4_0
    cairn_quant qwen3-0.6b 4 && cairn_quant qwen3-0.6b 8
    {
        echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, threads=$THREADS"
        echo "llama.cpp: $(cat "$LLAMACPP_DIR/VERSION" 2>/dev/null)"
        "$LB" --version 2>&1 | sed -n 1p
        echo "cairn: $(git rev-parse --short HEAD 2>/dev/null)"
    } | tee "$OUT/env.txt"
    local done_reps   # a second run into the same OUT_DIR adds repetitions to the table
    done_reps=$(grep -c '^== ' "$OUT/1.7b-bf16.txt" 2>/dev/null || true)
    for rep in $(seq $((${done_reps:-0} + 1)) $((${done_reps:-0} + reps))); do
        cpu_pair 1.7b-bf16 "$WORK/qwen3-1.7b" "$WORK/qwen3-1.7b-bf16.gguf" "$rep"
        cpu_pair 1.7b-f16 "$WORK/qwen3-1.7b-f16" "$WORK/qwen3-1.7b-f16.gguf" "$rep"
        cpu_pair 0.6b-q4 "$WORK/qwen3-0.6b-q4" "$WORK/qwen3-0.6b-q4_0.gguf" "$rep"
        cpu_pair 0.6b-q8 "$WORK/qwen3-0.6b-q8" "$WORK/qwen3-0.6b-q8_0.gguf" "$rep"
    done
    "$PY" "$HERE/peer_table.py" "$OUT"/1.7b-bf16.txt "$OUT"/1.7b-f16.txt "$OUT"/0.6b-q4.txt "$OUT"/0.6b-q8.txt |
        tee "$OUT/table.md"
}

# ==== cuda ====

# On the GPU machine, after `fetch` here and carrying DIR/llama.cpp-src.tar.xz and the tokenizer
# (commands: docs/bench.md): builds llama.cpp for sm_90 unless built, makes the Qwen3-8B-shaped
# checkpoint and its GGUFs (f16 from the bf16 safetensors, the quantized ones from the f16, as
# llama.cpp's own flow does), then runs each once: cairn's model_bench on the same shape made in GPU
# memory (bf16, and MLX affine 8 and 4 bit g64) and llama-bench tg128 / pp512 / pp4096 per GGUF.
# Every step is skipped when its output exists, so a call cut off by a time limit can be repeated.
# Disk: the checkpoint goes once the f16 GGUF exists (peak ~32 GB, ~35 GB kept).
cmd_cuda() {
    OUT=${1:-/tmp/cairn-peer-cuda}
    WORK=${WORK:-/tmp/cairn-peer}
    mkdir -p "$OUT" "$WORK"
    [ -x "$LLAMACPP_DIR/build-cuda/bin/llama-bench" ] || cmd_build "$LLAMACPP_DIR" --cuda
    LB=$LLAMACPP_DIR/build-cuda/bin/llama-bench
    if [ ! -f "$WORK/qwen3-8b-f16.gguf" ]; then
        synth qwen3-8b
        gguf "$WORK/qwen3-8b" "$WORK/qwen3-8b-f16.gguf" f16
        rm -rf "$WORK/qwen3-8b"
    fi
    for q in q8_0 q4_k_m q4_0; do gguf "$WORK/qwen3-8b-f16.gguf" "$WORK/qwen3-8b-$q.gguf" $q; done
    source "$HERE/gpu_env.sh" "$OUT"   # bw, gemm, MB (model_bench with the GPU's ceilings)
    for q in none affine:8:64 affine:4:64; do
        local qa=()
        [ $q = none ] || qa=(--quant "$q")
        echo "== cairn qwen3-8b quant=$q" | tee -a "$OUT/cairn.txt"
        $MB --synthetic configs/qwen3-8b.json "${qa[@]}" --backend cuda --prefill 512,4096 --decode-ctx 512 \
            --gen 128 2>&1 | grep -E '^(prefill|decode)' | tee -a "$OUT/cairn.txt"
    done
    for q in f16 q8_0 q4_k_m q4_0; do
        "$LB" -m "$WORK/qwen3-8b-$q.gguf" -ngl 99 -fa 1 -p 512,4096 -n 128 -r 3 -o md 2>/dev/null | tee -a "$OUT/llamacpp.md"
        echo "qwen3-8b-$q decode_bytes_per_tok=$(gguf_decode_bytes "$WORK/qwen3-8b-$q.gguf" 64)" | tee -a "$OUT/llamacpp.md"
    done
}

case ${1:-} in
fetch | build | convert | row | cpu | cuda) c=$1; shift; "cmd_$c" "$@" ;;
*) sed -n '2,/^[^#]/{/^#/p}' "$0"; exit 2 ;;
esac
