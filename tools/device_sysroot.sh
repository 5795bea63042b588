#!/usr/bin/env bash
# Packs what building cairn ON the GPU machine needs from this Debian machine into .devcarry/sys
# (git-ignored, ~2.5 MB): the headers of our Debian libraries and their static archives
# (jansson, PCRE2, utf8proc, xxhash), libmicrohttpd's shared object, and a libcurl.so link to the
# Ubuntu machine's libcurl.so.4. The GPU machine (16 cores, nvcc) then builds everything in a
# couple of minutes (tools/device_build.sh), where a build here on 2 cores takes far longer.
#   bash tools/device_sysroot.sh      then carry .devcarry in the device call
set -euo pipefail
D=.devcarry/sys
rm -rf "$D" && mkdir -p "$D/include" "$D/lib"
for h in jansson.h jansson_config.h xxhash.h utf8proc.h pcre2.h microhttpd.h; do
    cp "$(find /usr/include -maxdepth 2 -name "$h" | head -1)" "$D/include/"
done
cp -r "$(dirname "$(find /usr/include -maxdepth 3 -name curl.h -path '*curl/*' | head -1)")" "$D/include/"
A=/usr/lib/x86_64-linux-gnu
for l in libjansson.a libpcre2-8.a libutf8proc.a libxxhash.a; do cp "$A/$l" "$D/lib/"; done
cp -L "$A/libmicrohttpd.so.12" "$D/lib/" && ln -sf libmicrohttpd.so.12 "$D/lib/libmicrohttpd.so"
ln -sf "$A/libcurl.so.4" "$D/lib/libcurl.so"   # resolved on the GPU machine
du -sh "$D"
