#!/usr/bin/env bash
# Black-box checks of `cairn quantize` and of quantized checkpoints through the CLI: the written
# checkpoint loads in `info` (which names the recipe), `run` generates on it, and bad options or
# inputs end with a clear error and a non-zero exit.
set -euo pipefail
CAIRN=${BUILD:-build}/cairn
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }

CAIRN_LOG=error "$CAIRN" quantize tests/model/fixtures/qwen3 "$tmp/q4" --bits 4 --group-size 64 --quiet >"$tmp/out" 2>&1
check "quantize writes and reloads" "grep -q 'quantized tensors' '$tmp/out'"
check "info names the recipe" "CAIRN_LOG=error '$CAIRN' info '$tmp/q4' > '$tmp/info' && grep -q 'affine 4-bit group 64' '$tmp/info'"
ids=$(CAIRN_LOG=error "$CAIRN" run "$tmp/q4" --prompt-ids 5,17,42 --max-tokens 4 --temperature 0 --ignore-eos \
      --output ids --backend cpu --threads 2 2>/dev/null || true)
check "run on the quantized checkpoint" "[ \$(echo '$ids' | tr ',' '\n' | grep -c .) -eq 4 ]"
ids_ref=$(CAIRN_LOG=error "$CAIRN" run "$tmp/q4" --prompt-ids 5,17,42 --max-tokens 4 --temperature 0 --ignore-eos \
      --output ids --backend ref 2>/dev/null || true)
check "cpu and ref agree" "[ '$ids' = '$ids_ref' ]"

if "$CAIRN" quantize tests/model/fixtures/qwen3 "$tmp/bad" --bits 7 >/dev/null 2>"$tmp/e"; then
    echo "FAIL: 7 bits accepted"; fail=1
else check "7 bits refused with the supported list" "grep -q 'bits 2, 3, 4, 5, 6, 8' '$tmp/e'"; fi
if "$CAIRN" quantize tests/model/fixtures/qwen3 "$tmp/bad" --mode int4 >/dev/null 2>"$tmp/e"; then
    echo "FAIL: mode int4 accepted"; fail=1
else check "unknown mode refused" "grep -q 'unknown mode' '$tmp/e'"; fi
if "$CAIRN" quantize "$tmp/q4" "$tmp/bad2" >/dev/null 2>"$tmp/e"; then
    echo "FAIL: quantized input accepted"; fail=1
else check "already-quantized input refused" "grep -q 'already quantized' '$tmp/e'"; fi
# a hybrid MoE without --recipe: mlx-lm's model predicate puts the routers and shared-expert gates at 8 bit
CAIRN_LOG=error "$CAIRN" quantize tests/model/fixtures/qwen3_5_moe "$tmp/h4" --bits 4 --group-size 32 >"$tmp/out" 2>&1
check "hybrid: gates at 8 bit by the model's predicate" "grep -q 'routers and shared-expert gates at 8 bit' '$tmp/out'"
CAIRN_LOG=error "$CAIRN" info "$tmp/h4" >"$tmp/info" 2>&1
check "hybrid info: the recipe" "grep -q 'affine 4-bit group 32: 126 tensors; affine 8-bit group 64: 8 tensors' '$tmp/info'"
check "hybrid info: bytes per token" "grep -q 'per token: .* bytes of weights read per decoded token (active experts only)' '$tmp/info'"
check "hybrid info: layer kinds" "grep -q 'LLLA' '$tmp/info'"
ids=$(CAIRN_LOG=error "$CAIRN" run "$tmp/h4" --prompt-ids 5,17,42 --max-tokens 6 --temperature 0 --ignore-eos \
      --output ids --backend cpu --threads 2 2>/dev/null || true)
ids_ref=$(CAIRN_LOG=error "$CAIRN" run "$tmp/h4" --prompt-ids 5,17,42 --max-tokens 6 --temperature 0 --ignore-eos \
      --output ids --backend ref 2>/dev/null || true)
check "hybrid: run on cpu and ref agree" "[ -n '$ids' ] && [ '$ids' = '$ids_ref' ]"
if "$CAIRN" quantize /nonexistent "$tmp/bad3" >/dev/null 2>&1; then echo "FAIL: missing input accepted"; fail=1; fi
exit $fail
