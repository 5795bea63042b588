#!/usr/bin/env bash
# Runs every test program: the C test binaries given as arguments and every tests/*/run_*.sh
# script, in parallel on JOBS CPUs (default: all), each one's output in $BUILD/test-logs/.
# Prints one line per program as it ends, PASS / FAIL (with its log's tail) / SKIP (with the
# reason), then the closing line CI reads, exactly:
#     N passed, N failed, N skipped
# Exits non-zero if any failed. Exit status 77 means the program could not run here (no GPU, no
# node, tokenizer files not fetchable): it is counted as a skip, and its reason is its last
# "SKIP: ..." output line (tests/harness.h test_skip; `skip` in the scripts). A program that passes
# with some of its tests skipped here (tests/harness.h SKIP_CASE: "SKIP case NAME: reason" lines)
# counts as passed, and each skipped case is listed after the time line ("skipped case: ...").
#
# Order: longest first, by the times of the previous run ($BUILD/test-logs/times: wall seconds,
# CPU seconds, program), or on a first run by tests/times (a reference run's wall times, committed:
# refresh it from a quiet machine's times file when the suite changes much); programs with no time
# yet go first.
# JOBS counts CPUs, not programs: a program counts as its CPU share (CPU / wall, at least 0.5;
# unknown ones 1), so the scripts that mostly wait on servers, sleeps and timeouts run beside the
# CPU-bound ones instead of holding a CPU idle. The closing time line gives the wall time, the
# programs' wall times summed and their CPU time (user + system) summed.
set -u
BUILD=${BUILD:-build}
export BUILD
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
LOGS=$BUILD/test-logs
mkdir -p "$LOGS"
times_file=$LOGS/times
known_times=$times_file
[ -s "$known_times" ] || known_times=tests/times

progs=()
for s in tests/*/run_*.sh; do [ -f "$s" ] && progs+=("$s"); done
progs+=("$@")
declare -A share_of=()   # program -> its CPU share in hundredths
if [ -s "$known_times" ]; then   # known programs by their last time, descending; new ones first
    mapfile -t progs < <(for p in "${progs[@]}"; do
        t=$(awk -v p="$p" '$NF == p { print $1 }' "$known_times")
        echo "${t:-999999} $p"
    done | sort -s -k1,1nr | cut -d' ' -f2-)
    # (a times file of two columns, wall and program, gives no CPU: every share is 1)
    while read -r share p; do share_of[$p]=$share; done < <(awk 'NF == 3 && $1 > 0 {
        s = $2 / $1; if (s < 0.5) s = 0.5; if (s > 1) s = 1; printf "%d %s\n", s * 100, $3 }' "$known_times")
fi

log_of() { echo "$LOGS/$(echo "$1" | tr '/' '_').log"; }
now() { date +%s.%N; }

# run_one PROG: runs it with its output in its log, then writes "STATUS END_TIME CPU_SECONDS" to
# LOG.rc (CPU: user + system of the program and everything it started and waited for)
run_one() {
    local p=$1 log rc cpu TIMEFORMAT='%U %S'
    log=$(log_of "$p")
    if [[ $p == *.sh ]]; then
        { time bash "$p" > "$log" 2>&1 < /dev/null; } 2> "$log.cpu"
    else
        { time "$p" > "$log" 2>&1 < /dev/null; } 2> "$log.cpu"
    fi
    rc=$?
    cpu=$(awk '{ printf "%.1f", $1 + $2 }' "$log.cpu")
    rm -f "$log.cpu"
    echo "$rc $(now) $cpu" > "$log.rc"
}

declare -A start_of=()   # running program -> start time
load=0                   # the running programs' CPU shares summed, in hundredths
passed=0 failed=0 skipped=0
failures=() skips=() skipped_cases=()
t_begin=$(now)
: > "$times_file.new"

# report PROG: prints the finished program's line and records its time
report() {
    local p=$1 log rc end cpu secs
    log=$(log_of "$p")
    read -r rc end cpu < "$log.rc"
    rm -f "$log.rc"
    secs=$(awk -v a="${start_of[$p]}" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    unset "start_of[$p]"
    load=$((load - ${share_of[$p]:-100}))
    echo "$secs ${cpu:-0} $p" >> "$times_file.new"
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
        local cases
        mapfile -t cases < <(grep -a '^SKIP case ' "$log" | cut -c11-)
        for c in "${cases[@]}"; do skipped_cases+=("$p: $c"); done
        if [ ${#cases[@]} -gt 0 ]; then printf 'PASS %6ss  %s (%d cases skipped)\n' "$secs" "$p" ${#cases[@]}
        else printf 'PASS %6ss  %s\n' "$secs" "$p"; fi
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
    while [ ${#start_of[@]} -gt 0 ] && [ $((load + ${share_of[$p]:-100})) -gt $((JOBS * 100)) ]; do reap; done
    start_of[$p]=$(now)
    load=$((load + ${share_of[$p]:-100}))
    run_one "$p" &
done
while [ ${#start_of[@]} -gt 0 ]; do reap; done

sum=$(awk '{ s += $1 } END { printf "%.0f", s }' "$times_file.new")
cpu=$(awk '{ s += $2 } END { printf "%.0f", s }' "$times_file.new")
wall=$(awk -v a="$t_begin" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }')
sort -k1,1nr "$times_file.new" > "$times_file"
rm -f "$times_file.new"
echo "test time: ${wall} s wall with ${JOBS} jobs, ${sum} s summed over programs, ${cpu} s CPU (logs: $LOGS)"
for s in "${skips[@]}"; do echo "skipped: $s"; done
for s in "${skipped_cases[@]}"; do echo "skipped case: $s"; done
for f in "${failures[@]}"; do echo "failed: $f"; done
# a program that never reported (a bug here) must not pass unnoticed
if [ $((passed + failed + skipped)) -ne ${#progs[@]} ]; then
    echo "run_all: ${#progs[@]} programs, $((passed + failed + skipped)) results"
    failed=$((failed + ${#progs[@]} - passed - failed - skipped))
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
