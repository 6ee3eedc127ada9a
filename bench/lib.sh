# Shared helpers for the bench/ scripts. Sourced, not executed.
# shellcheck shell=bash disable=SC2034  # globals used by the sourcing scripts
# Needs: bash, coreutils, iproute2 (ss, ip), awk.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)

log() { printf '%s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Resolve the oxcat binary: $OXCAT, or target/release/oxcat of this repo,
# built with cargo if it is missing (only in the default case).
resolve_oxcat() {
    if [[ -n "${OXCAT:-}" ]]; then
        [[ -x "$OXCAT" ]] || die "OXCAT=$OXCAT is not an executable"
        OXCAT=$(readlink -f "$OXCAT")
        return
    fi
    OXCAT="$REPO_ROOT/target/release/oxcat"
    if [[ ! -x "$OXCAT" ]]; then
        log "building oxcat: cargo build --release -p oxcat"
        (cd "$REPO_ROOT" && cargo build --release -p oxcat) >&2
    fi
    [[ -x "$OXCAT" ]] || die "no oxcat binary at $OXCAT"
}

# Processes started by a script, killed by cleanup_pids (by PID only).
BG_PIDS=()
cleanup_pids() {
    local p
    for p in "${BG_PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${BG_PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    BG_PIDS=()
}

# NS_RX / NS_TX: command prefixes (arrays) that place the receiver / sender in
# a network namespace; empty for loopback.
NS_RX=()
NS_TX=()

# is_port_free PORT: nothing (listener or connection) uses the TCP port in the
# receiver's namespace.
is_port_free() {
    [[ -z "$("${NS_RX[@]}" ss -tanH "sport = :$1" 2>/dev/null)" ]]
}

# next_port: sets PORT to a TCP port not in use, below the ephemeral range.
# Ports are handed out in increasing order from a PID-dependent base, so
# successive transfers use fresh ports. (Sets a global: do not call it in $(...).)
_NEXT_PORT=$((20000 + ($$ * 37) % 10000))
next_port() {
    local tries=0
    while ((tries < 2000)); do
        _NEXT_PORT=$((_NEXT_PORT + 1))
        ((_NEXT_PORT < 32000)) || _NEXT_PORT=20001
        tries=$((tries + 1))
        if is_port_free "$_NEXT_PORT"; then
            PORT=$_NEXT_PORT
            return 0
        fi
    done
    die "no free TCP port found"
}

# wait_listen PORT [PID]: poll ss (never connect) until a TCP listener is on
# PORT in the receiver's namespace. Bounded: 10 s. Fails early if PID died.
wait_listen() {
    local port=$1 pid=${2:-} i
    for ((i = 0; i < 1000; i++)); do
        if [[ -n "$("${NS_RX[@]}" ss -ltnH "sport = :$port" 2>/dev/null)" ]]; then
            return 0
        fi
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            log "listener (pid $pid) exited before listening on port $port"
            return 1
        fi
        sleep 0.01
    done
    log "timed out waiting for a listener on port $port"
    return 1
}

# now_ns: monotonic-enough wall clock in nanoseconds.
now_ns() { date +%s%N; }

# median of the numbers on stdin (one per line).
median() {
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "nan"; exit }
        if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ratio A B: A/B with two decimals, or "n/a".
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a == "" || b == "" || a == "n/a" || b == "n/a" || b + 0 == 0) print "n/a";
        else printf "%.2f", a / b }'
}

# machine_info: one line describing the machine, for RESULTS.md.
machine_info() {
    local cpu
    cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    printf 'nproc=%s cpu="%s" kernel=%s date=%s\n' \
        "$(nproc)" "${cpu:-unknown}" "$(uname -r)" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}
