#!/usr/bin/env bash
# Packs what a GPU-machine run needs into build-dev/ (git-ignored), small enough to travel with
# the working tree (the device tool's limit is 64 MiB in all): a Hopper-only build of the library
# as one shared object, the tools and tests linked against it, and the shared libraries that an
# Ubuntu machine without our Debian -dev packages lacks.
#   bash tools/device_pack.sh [test and bench names...]
# On the device: export LD_LIBRARY_PATH=$PWD/build-dev/lib; binaries are under build-dev/.
set -euo pipefail
B=build-gpu
DST=build-dev
make -s -j2 BUILD=$B CUDA_GENCODE="-gencode arch=compute_90,code=sm_90" EXTRA_NVCCFLAGS="-Xfatbin -compress-all" $B/libcairn.so $B/libcairn.a >/dev/null
rm -rf "$DST"
mkdir -p "$DST/lib" "$DST/tests/cuda" "$DST/tests/model" "$DST/bench"
cp $B/libcairn.so "$DST/lib/" && strip --strip-debug "$DST/lib/libcairn.so"
CC="cc -std=c11 -D_GNU_SOURCE -O2 -pthread -Isrc -Itests -DCAIRN_HAVE_CUDA -I/usr/local/cuda/include"
LINK="-L$DST/lib -lcairn -ljansson -Wl,-rpath,\$ORIGIN/lib:\$ORIGIN/../lib:\$ORIGIN/../../lib -lm -lpthread"
$CC src/app/*.c $LINK -o "$DST/cairn"
for t in tests/cuda/test_cuda_ops tests/cuda/test_cuda_attention tests/cuda/test_cuda_synth tests/model/test_fixtures; do $CC "$t.c" $LINK -o "$DST/$t"; done
$CC bench/model_bench.c $LINK -o "$DST/bench/model_bench"
$CC bench/attn_bench.c $LINK -o "$DST/bench/attn_bench"
$CC bench/batch_invariance.c $LINK -o "$DST/bench/batch_invariance"
[ -f bench/engine_bench.c ] && $CC bench/engine_bench.c $LINK -o "$DST/bench/engine_bench"
nvcc -O3 -std=c++17 -cudart shared -gencode arch=compute_90,code=sm_90 bench/gpu_peak.cu -lcublas -o "$DST/bench/gpu_peak"
# Only what an Ubuntu 24.04 CUDA image is unlikely to have.
for lib in libjansson.so.4 libpcre2-8.so.0 libutf8proc.so.2 libxxhash.so.0 libmicrohttpd.so.12 ${EXTRA_LIBS:-}; do
    p=$(ldd $B/libcairn.so | awk -v l="$lib" '$1 == l {print $3; exit}')
    [ -n "$p" ] && cp -L "$p" "$DST/lib/"
done
du -sh "$DST"
