#!/usr/bin/env bash
# Constrained decoding through the engine, checked by an independent validator: the outputs of a
# random-weight model sampled at temperature 1 under the JSON Schema corpus
# (build/tests/engine/test_engine_constraint) validated with ajv (tests/text/validate_constraint.mjs).
# Needs node >= 18 and npm; exits 77 (SKIP) without them.
set -u
. tests/lib.sh
need_ajv
bin="$BUILD/tests/engine/test_engine_constraint"
[ -x "$bin" ] || { echo "run_engine_constraint: $bin not built" >&2; exit 1; }
out="$BUILD/engine_constraint.jsonl"
ENGINE_CONSTRAINT_OUT="$out" "$bin" > /dev/null 2>&1 || { echo "FAIL $bin"; exit 1; }
if node tests/text/validate_constraint.mjs "$out"; then echo "ok   engine constrained outputs validate (ajv)"; else echo "FAIL engine constrained outputs (ajv)"; exit 1; fi
