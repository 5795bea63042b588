#!/usr/bin/env bash
# Packs what a GPU-machine run needs from a build made here into build-dev/ (git-ignored):
# the cairn binary, test and bench binaries, and the shared libraries they use that an Ubuntu
# machine without our Debian -dev packages may lack (everything but glibc itself) in build-dev/lib.
# On the device: export LD_LIBRARY_PATH=$PWD/build-dev/lib BUILD=build-dev
set -euo pipefail
SRC=${1:-build-gpu}   # make BUILD=build-gpu CUDA_GENCODE="-gencode arch=compute_90,code=sm_90" tests bench-tools
DST=build-dev
rm -rf "$DST"
mkdir -p "$DST/lib" "$DST/tests" "$DST/bench"
cp "$SRC/cairn" "$DST/"
for d in tests/cuda tests/model; do
    [ -d "$SRC/$d" ] && mkdir -p "$DST/$d" && find "$SRC/$d" -maxdepth 1 -type f -perm -u+x -exec cp {} "$DST/$d/" \;
done
for b in model_bench gpu_peak engine_bench; do [ -x "$SRC/bench/$b" ] && cp "$SRC/bench/$b" "$DST/bench/"; done
find "$DST" -type f -perm -u+x -not -path "$DST/lib/*" -exec strip --strip-debug {} \;
for f in $(find "$DST" -type f -perm -u+x -not -path "$DST/lib/*"); do
    ldd "$f" 2>/dev/null | awk '$3 ~ /^\// {print $3}'
done | sort -u | grep -vE '/(libc|libm|libpthread|libdl|librt|ld-linux-x86-64|libresolv|libcublas|libcublasLt|libcudart|libstdc\+\+|libgcc_s)\.so' | while read -r lib; do
    cp -L "$lib" "$DST/lib/"
done
du -sh "$DST"
