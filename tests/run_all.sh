#!/usr/bin/env bash
# Runs every test program: the C test binaries given as arguments and every tests/*/run_*.sh
# script, JOBS at a time (default: one per CPU), each one's output in $BUILD/test-logs/.
# Prints one line per program as it ends, PASS / FAIL (with its log's tail) / SKIP (with the
# reason), then the closing line CI reads, exactly:
#     N passed, N failed, N skipped
# Exits non-zero if any failed. Exit status 77 means the program could not run here (no GPU, no
# node, tokenizer files not fetchable): it is counted as a skip, and its reason is its last
# "SKIP: ..." output line (tests/harness.h test_skip; `skip` in the scripts).
#
# Order: longest first, by the times of the previous run ($BUILD/test-logs/times); on a first
# run, the scripts (the slow, mostly waiting black-box tests) before the binaries.
set -u
BUILD=${BUILD:-build}
export BUILD
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
LOGS=$BUILD/test-logs
mkdir -p "$LOGS"
times_file=$LOGS/times

progs=()
for s in tests/*/run_*.sh; do [ -f "$s" ] && progs+=("$s"); done
progs+=("$@")
if [ -s "$times_file" ]; then   # known programs by their last time, descending; new ones first
    mapfile -t progs < <(for p in "${progs[@]}"; do
        t=$(awk -v p="$p" '$2 == p { print $1 }' "$times_file")
        echo "${t:-999999} $p"
    done | sort -s -k1,1nr | cut -d' ' -f2-)
fi

log_of() { echo "$LOGS/$(echo "$1" | tr '/' '_').log"; }
now() { date +%s.%N; }

# run_one PROG: runs it with its output in its log, then writes "STATUS END_TIME" to LOG.rc
run_one() {
    local p=$1 log rc
    log=$(log_of "$p")
    if [[ $p == *.sh ]]; then bash "$p" > "$log" 2>&1 < /dev/null; else "$p" > "$log" 2>&1 < /dev/null; fi
    rc=$?
    echo "$rc $(now)" > "$log.rc"
}

declare -A start_of=()   # running program -> start time
passed=0 failed=0 skipped=0
failures=() skips=()
t_begin=$(now)
: > "$times_file.new"

# report PROG: prints the finished program's line and records its time
report() {
    local p=$1 log rc end secs
    log=$(log_of "$p")
    read -r rc end < "$log.rc"
    rm -f "$log.rc"
    secs=$(awk -v a="${start_of[$p]}" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    unset "start_of[$p]"
    echo "$secs $p" >> "$times_file.new"
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
        printf 'PASS %6ss  %s\n' "$secs" "$p"
    elif [ "$rc" -eq 77 ]; then
        skipped=$((skipped + 1))
        local why
        why=$(grep -a '^SKIP: ' "$log" | tail -1 | cut -c7-)
        [ -n "$why" ] || why=$(tail -1 "$log")
        skips+=("$p: $why")
        printf 'SKIP %6ss  %s: %s\n' "$secs" "$p" "$why"
    else
        failed=$((failed + 1))
        failures+=("$p")
        printf 'FAIL %6ss  %s (exit %s, log: %s)\n' "$secs" "$p" "$rc" "$log"
        tail -30 "$log" | sed 's/^/    /'
    fi
}

# reap: waits for at least one running program to end, then reports every one that has
reap() {
    wait -n
    local p
    for p in "${!start_of[@]}"; do [ -f "$(log_of "$p").rc" ] && report "$p"; done
}

for p in "${progs[@]}"; do
    rm -f "$(log_of "$p").rc"
    while [ ${#start_of[@]} -ge "$JOBS" ]; do reap; done
    start_of[$p]=$(now)
    run_one "$p" &
done
while [ ${#start_of[@]} -gt 0 ]; do reap; done

sum=$(awk '{ s += $1 } END { printf "%.0f", s }' "$times_file.new")
wall=$(awk -v a="$t_begin" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }')
mv "$times_file.new" "$times_file"
echo "test time: ${wall} s wall with ${JOBS} jobs, ${sum} s summed over programs (logs: $LOGS)"
for s in "${skips[@]}"; do echo "skipped: $s"; done
for f in "${failures[@]}"; do echo "failed: $f"; done
# a program that never reported (a bug here) must not pass unnoticed
if [ $((passed + failed + skipped)) -ne ${#progs[@]} ]; then
    echo "run_all: ${#progs[@]} programs, $((passed + failed + skipped)) results"
    failed=$((failed + ${#progs[@]} - passed - failed - skipped))
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
