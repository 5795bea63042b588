#!/usr/bin/env bash
# Makes sure node and npm exist and tests/server/node_modules holds the SDK clients of
# package-lock.json (npm ci on first use; later runs reuse it). Safe to run concurrently (make -j
# test starts several node suites at once): installs happen one at a time under a lock.
# Exit status: 0 ready; 77 when it cannot be made ready here (no node, no npm, npm ci failed:
# usually no network), with the reason on stdout as "SKIP: ...", which callers pass on.
set -u
command -v node > /dev/null || { echo "SKIP: node is not installed (bash scripts/deps.sh --test)"; exit 77; }
command -v npm > /dev/null || { echo "SKIP: npm is not installed (bash scripts/deps.sh --test)"; exit 77; }
ready() { [ -f tests/server/node_modules/openai/package.json ] && [ -f tests/server/node_modules/@anthropic-ai/sdk/package.json ] && [ -f tests/server/node_modules/ollama/package.json ]; }
ready && exit 0
exec 9> tests/server/.npm-ci.lock
flock 9
ready && exit 0
(cd tests/server && npm ci --no-audit --no-fund --loglevel=error) >&2 || { echo "SKIP: npm ci in tests/server failed (network needed on the first run)"; exit 77; }
exit 0
