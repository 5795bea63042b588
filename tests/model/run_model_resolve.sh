#!/usr/bin/env bash
# `cairn serve ORG/NAME` finds a model in the Hugging Face hub cache (HF_HOME / HF_HUB_CACHE, refs/main
# or the newest snapshot) and serves it under that name; -c caps the context it reports; an id that
# is nowhere fails with the places it looked; --version prints the version and the backends.
set -u
BUILD=${BUILD:-build}
CAIRN=$PWD/$BUILD/cairn
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }

"$CAIRN" --version > "$tmp/version" 2>&1
check "--version names the version and the backends" "grep -qE '^cairn [0-9]+\.[0-9]+.*backends: .*cpu' '$tmp/version'"

repo="$tmp/hub/models--acme--tiny"
mkdir -p "$repo/snapshots/rev1" "$repo/snapshots/rev2" "$repo/refs"
for f in models/default/*; do ln -s "$PWD/$f" "$repo/snapshots/rev2/"; done
echo rev2 > "$repo/refs/main"
HF_HUB_CACHE="$tmp/hub" "$CAIRN" serve acme/tiny --port 0 -c 1000 --backend cpu --threads 1 > "$tmp/log" 2>&1 &
pid=$!
port=
for _ in $(seq 1 300); do
    port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/log" | head -1)
    [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/health" > /dev/null 2>&1 && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.2
done
models=$(curl -s "http://127.0.0.1:$port/v1/models")
check "ORG/NAME from HF_HUB_CACHE is served under that name" "echo '$models' | grep -q '\"id\":\"acme/tiny\"'"
check "-c caps the context /v1/models reports" "echo '$models' | grep -q '\"max_model_len\":1000'"
kill $pid; wait $pid 2>/dev/null; pid=

HF_HOME="$tmp" HF_HUB_CACHE= "$CAIRN" serve acme/missing --port 0 > "$tmp/log2" 2>&1
rc=$?
check "an unknown repo id exits non-zero" "[ $rc -ne 0 ]"
check "and says where it looked" "grep -q 'not in the Hugging Face cache ($tmp/hub/' '$tmp/log2'"
"$CAIRN" serve --max-model-len 1 > "$tmp/log3" 2>&1
check "--max-model-len 1 is refused" "[ $? -eq 2 ] && grep -q 'at least 2' '$tmp/log3'"
exit $fail
