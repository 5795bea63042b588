#!/usr/bin/env bash
# Installs the Debian packages cairn needs, only those missing. `--test` adds what the tests need
# (node and npm for the API-client tests). Uses sudo when not root.
set -euo pipefail
pkgs=(build-essential pkg-config libjansson-dev libpcre2-dev libutf8proc-dev libmicrohttpd-dev
      libcurl4-openssl-dev libxxhash-dev)
if [ "${1:-}" = "--test" ]; then pkgs+=(nodejs npm curl ca-certificates python3); fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# nodejs/npm may come from elsewhere (nvm, NodeSource): accept any working node and npm.
if [ "${1:-}" = "--test" ] && command -v node >/dev/null && command -v npm >/dev/null; then
    missing=("${missing[@]/nodejs/}"); missing=("${missing[@]/npm/}")
fi
todo=()
for p in "${missing[@]}"; do [ -n "$p" ] && todo+=("$p"); done
[ ${#todo[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing: ${todo[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${todo[@]}"
