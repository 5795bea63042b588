#!/usr/bin/env bash
# Engine benchmark: continuous batching on a synthesized Qwen3-0.6B-shaped model (configs/qwen3-0.6b.json),
# cpu backend, 2 threads by default. Builds $BUILD/libcairn.a, compiles bench/engine_bench.c against it and runs:
#   decode  - aggregate decode tok/s at 1, 4, 8, 16 concurrent requests (target: >= 4x single at 8)
#   agentic - 2,000-token system prompt + 10 different 100-token user messages: TTFT warm / cold (target <= 0.1)
#   gap     - worst inter-token gap of a running stream while a long prompt (--long, 16384 default) is ingested
# Usage: bench/engine_bench.sh [engine_bench flags...]   e.g. --part decode --conc 1,8 --long 4096
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-enginebench}
make BUILD="$BUILD" CUDA=0 -j"$(nproc)" "$BUILD/libcairn.a" >/dev/null
cc -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -pthread -Isrc bench/engine_bench.c "$BUILD/libcairn.a" \
   -pthread -Wl,-Bstatic -ljansson -lpcre2-8 -lutf8proc -lxxhash -Wl,-Bdynamic -lmicrohttpd -lcurl -lm -ldl \
   -o "$BUILD/engine_bench"
echo "# $(date -u +%FT%TZ) $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
"$BUILD/engine_bench" "$@"
