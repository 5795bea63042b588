#!/usr/bin/env bash
# Packs a device call (the device tool's run) into .devcarry/ (git-ignored), built HERE so that the
# GPU machine's time goes to running, not compiling: the library for sm_90 (stripped, xz: ~10 MB,
# where the CUDA objects take 4-5 minutes on 2 cores here and a full build there costs device time),
# the Debian headers and static libraries the GPU machine lacks (tools/device_sysroot.sh), and the
# Qwen3 tokenizer. On the device, tools/device_run.sh unpacks them and links only the programs a call
# names (seconds on its 16 cores).
#   bash tools/device_carry.sh [BASE_REF]
# BASE_REF (a commit, e.g. main before a change): also packs that commit's library as
# .devcarry/libcairn-base.a.xz, so one call measures before and after (device_run.sh BASE=1).
# The device tool carries at most 64 MiB of working tree: the tracked files are ~65 MB with the
# tokenizer goldens (tests/text/golden/tok_*, 6.6 MB) and the default model (models/default, 31 MB),
# so the call is made with those moved out of the tree (tests that need them are not GPU tests):
#   mkdir -p /tmp/hold && mv tests/text/golden/tok_* models/default/model.safetensors /tmp/hold/
#   ... run(command="bash tools/device_run.sh ...", carry=[".devcarry"]) ...
#   mv /tmp/hold/tok_* tests/text/golden/ && mv /tmp/hold/model.safetensors models/default/
# (never commit while they are out).
set -euo pipefail
GEN="-gencode arch=compute_90,code=sm_90"
bash tools/device_sysroot.sh >/dev/null
S=$PWD/.devcarry/sys
pack_lib() {   # pack_lib BUILD_DIR OUT.xz
    make -s -j2 BUILD="$1" CUDA_GENCODE="$GEN" EXTRA_CFLAGS="-I$S/include" "$1/libcairn.a"
    local t
    t=$(mktemp)
    cp "$1/libcairn.a" "$t" && strip --strip-debug "$t"
    xz -T2 -3 -c "$t" > "$2"
    rm -f "$t"
}
pack_lib build-dev .devcarry/libcairn.a.xz
if [ -n "${1:-}" ]; then
    w=$(mktemp -d)
    git worktree add -q --detach "$w" "$1"
    (cd "$w" && pack_lib build-dev "$OLDPWD/.devcarry/libcairn-base.a.xz")
    git worktree remove --force "$w"
fi
bash tests/text/fetch_tokenizers.sh qwen3
tar czf .devcarry/qwen3-tok.tgz -C build/tokenizers qwen3
du -sh .devcarry
