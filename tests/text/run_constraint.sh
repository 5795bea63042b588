#!/usr/bin/env bash
# Constrained decoding, checked by independent validators: random walks under every corpus entry
# (tests/text/schemas, build/tests/text/test_constraint_walk) with the default model's tokenizer and,
# when cached, the Qwen3 tokenizer (151K ids; tests/text/fetch_tokenizers.sh), then each output
# validated with ajv (JSON Schema) or RegExp (regex, GBNF). Needs node >= 18 and npm; exits 77 (SKIP)
# without them. Installs tests/text/node_modules from package-lock.json on first run.
set -u
. tests/lib.sh
need_ajv
walker="$BUILD/tests/text/test_constraint_walk"
[ -x "$walker" ] || { echo "run_constraint: $walker not built" >&2; exit 1; }
rc=0
tokenizers=(models/default)
[ -s "$BUILD/tokenizers/qwen3/tokenizer.json" ] && tokenizers+=("$BUILD/tokenizers/qwen3")
for tok in "${tokenizers[@]}"; do
    out="$BUILD/constraint_walk_$(basename "$tok").jsonl"
    seeds=${CONSTRAINT_WALK_SEEDS:-$([ "$tok" = models/default ] && echo 8 || echo 2)}
    start=$(date +%s)
    if ! CONSTRAINT_TOKENIZER="$tok" CONSTRAINT_WALK_SEEDS=$seeds CONSTRAINT_WALK_OUT="$out" "$walker"; then
        echo "FAIL constraint walks ($tok)"; rc=1; continue
    fi
    if node tests/text/validate_constraint.mjs "$out"; then
        echo "ok   constraint walks + validation ($tok, $(( $(date +%s) - start )) s)"
    else
        echo "FAIL constraint validation ($tok)"; rc=1
    fi
done
exit $rc
