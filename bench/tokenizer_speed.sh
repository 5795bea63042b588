#!/usr/bin/env bash
# Tokenizer encode speed: ~10 MB of mixed text (bench/tokenizer_speed_text.py) through the Qwen3
# tokenizer, single-threaded. Needs `make` done and tests/text/fetch_tokenizers.sh's cache.
# usage: BUILD=build bash bench/tokenizer_speed.sh [TOKENIZER_NAME]
set -eu
BUILD=${BUILD:-build}
name=${1:-qwen3}
bash tests/text/fetch_tokenizers.sh "$name"
text="$BUILD/bench_tokenizer_text.txt"
[ -s "$text" ] || python3 bench/tokenizer_speed_text.py "$text"
mkdir -p "$BUILD/bench"
cc -std=c11 -D_GNU_SOURCE -O2 -Isrc bench/tokenizer_speed.c "$BUILD/libcairn.a" -pthread \
   -Wl,-Bstatic -ljansson -lpcre2-8 -lutf8proc -lxxhash -Wl,-Bdynamic -lm -o "$BUILD/bench/tokenizer_speed"
"$BUILD/bench/tokenizer_speed" "$BUILD/tokenizers/$name" "$text" --runs 3
