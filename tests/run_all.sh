#!/usr/bin/env bash
# Runs every C test binary given as arguments, then every tests/*/run_*.sh script.
# Prints one line per test program and a summary; exits non-zero if any failed.
set -u
BUILD=${BUILD:-build}
export BUILD
failed=()
n=0
for t in "$@"; do
    n=$((n + 1))
    if "$t" > "$t.log" 2>&1; then echo "PASS $t"; else echo "FAIL $t (log: $t.log)"; tail -30 "$t.log"; failed+=("$t"); fi
done
for s in $(ls tests/*/run_*.sh 2>/dev/null | sort); do
    n=$((n + 1))
    log="$BUILD/$(echo "$s" | tr '/' '_').log"
    bash "$s" > "$log" 2>&1
    rc=$?
    # 77: the script's prerequisites are missing (automake's SKIP convention); say so, never pass.
    if [ $rc -eq 0 ]; then echo "PASS $s"; elif [ $rc -eq 77 ]; then echo "SKIP $s: $(tail -1 "$log")"
    else echo "FAIL $s (log: $log)"; tail -30 "$log"; failed+=("$s"); fi
done
echo "$n test programs, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
