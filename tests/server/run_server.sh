#!/usr/bin/env bash
# Black-box tests of `cairn serve` (the built-in fake model; see api.test.mjs) driven by the official
# npm clients (openai, @anthropic-ai/sdk) and raw HTTP: API conformance, tool calls of every family,
# reasoning, the hostile-input suite and the load/disconnect test. Needs node >= 18 and npm (installs
# tests/server/node_modules from package-lock.json on first run; skips, exit 77, without them).
# Under `make asan` the server is the ASan/UBSan build and every suite checks its stderr for
# sanitizer reports.
set -u
. tests/lib.sh
[ -x "$CAIRN" ] || { echo "run_server: $CAIRN not built" >&2; exit 1; }
need_node
npm_ready tests/server || skip "npm install in tests/server failed (network needed on the first run)"
rc=0
for t in api hostile load agents responses ollama conn; do
    start=$(date +%s)
    if node tests/server/$t.test.mjs; then echo "ok   server/$t ($(( $(date +%s) - start )) s)"; else echo "FAIL server/$t"; rc=1; fi
done
exit $rc
