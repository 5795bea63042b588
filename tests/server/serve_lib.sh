# serve_lib: what the black-box `cairn serve` scripts share (sourced, not run): $CAIRN, a temporary
# directory $tmp removed at exit with the server, check NAME COND, and serve / stop of one server
# in the background on the cpu backend.
set -u
BUILD=${BUILD:-build}
CAIRN="$BUILD/cairn"
[ -x "$CAIRN" ] || { echo "missing $CAIRN"; exit 1; }
command -v curl > /dev/null || { echo "$0: curl is required"; exit 1; }
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }

# serve LOG ARGS...: starts serve in the background; sets $port and $pid, or returns 1 if it
# exited (its status in $rc, $pid empty)
serve() {
    local log=$1; shift
    "$CAIRN" serve "$@" --port 0 --backend cpu --threads 1 > "$log" 2>&1 &
    pid=$!
    for _ in $(seq 1 300); do
        port=$(grep -o 'http://[0-9.]*:[0-9]*' "$log" | head -1 | sed 's/.*://')
        if [ -n "$port" ] && curl -s "http://127.0.0.1:$port/health" | grep -q '"ok"'; then return 0; fi
        kill -0 "$pid" 2>/dev/null || { wait "$pid"; rc=$?; pid=; return 1; }
        sleep 0.1
    done
    return 1
}
stop() { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=; }
