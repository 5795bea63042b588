#!/usr/bin/env bash
# Fetches what the tests download, all at once: the npm packages of tests/server, tests/text and
# tests/clients (each from its package-lock.json, tests/lib.sh npm_ready) and the seven tokenizers
# (tests/text/fetch_tokenizers.sh). Network and disk, little CPU: `make test` runs it in the
# background while it compiles. The tests that need these wait on the same locks, so each is
# fetched once whoever gets there first, and a test fetches what is still missing itself (a
# failure here is theirs to report or skip on). Exit status: 0 when everything is in place.
set -u
. tests/lib.sh
command -v npm > /dev/null || { echo "fetch_deps: npm is not installed: the node tests will skip"; exit 1; }
pids=()
for d in tests/server tests/text tests/clients; do
    { npm_ready "$d" && echo "fetch_deps: $d/node_modules ready"; } &
    pids+=($!)
done
bash tests/text/fetch_tokenizers.sh &
pids+=($!)
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
