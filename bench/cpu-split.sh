#!/usr/bin/env bash
# Where a proxied request's CPU time goes, kernel against user space, for dcr-gateway and
# HAProxy under the same load (issue 10): each proxy alone on core 1, nginx (answers 201) and
# wrk `-t1 -c32` GET on a non-registration path on core 0, as in bench/compare.sh. perf samples
# the proxy (cpu-clock, works in VMs without a PMU) for SECONDS; the script prints rps, how busy
# the proxy's core was, its CPU time per request (utime + stime from /proc over the requests in
# the window) split into kernel and user by perf's samples, and the system calls that dominate
# the kernel share.
#
#   bench/cpu-split.sh [SECONDS]        # default 8
#   SPIN=1 bench/cpu-split.sh           # and an idle-priority spinner on core 0
#   KEEP=DIR bench/cpu-split.sh         # keep the perf data (DIR/NAME.perf) for perf report
#
# With SPIN=1 a busy loop at SCHED_IDLE priority keeps core 0 from ever halting: wrk and nginx
# still get all the CPU they ask for, but waking them never has to bring a halted vCPU back.
# Comparing the kernel share with and without it shows how much of a proxy's kernel time per
# request is the cost of waking an idle core, which depends on the load, not on the proxy.
#
# Needs perf (Debian: linux-perf), haproxy, nginx, wrk; builds the release gateway if missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
SECS=${1:-8}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
GATEWAY=$CARGO_TARGET_DIR/release/dcr-gateway
for tool in perf haproxy nginx wrk taskset; do
    command -v "$tool" >/dev/null || { echo "cpu-split.sh: $tool is missing" >&2; exit 1; }
done
[ -x "$GATEWAY" ] || cargo build --quiet --release --bin dcr-gateway

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_work dcr-cpu-split

NGINX_PORT=$(free_port)
nginx_upstream "$WORK" "$NGINX_PORT"
PIDS+=("$NGINX_PID")
if [ "${SPIN:-0}" = 1 ]; then
    taskset -c 0 chrt --idle 0 sh -c 'while :; do :; done' &
    PIDS+=($!)
    echo "idle-priority spinner on core 0 (pid $!)"
fi

# utime + stime of PID, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# measure NAME PID PORT: wrk for SECS+4 s, perf on PID for SECS s in the middle.
measure() {
    local name=$1 pid=$2 port=$3 data=$WORK/$1.perf rps total kernel user
    taskset -c 0 wrk -t1 -c32 -d"$((SECS + 4))s" "http://127.0.0.1:$port/realms/demo/account" >"$WORK/$name.wrk" &
    local wrk=$!
    sleep 2
    local before after t0 t1 secs
    perf record -q -e cpu-clock -F 2000 -g -p "$pid" -o "$data" -- sleep "$SECS" 2>/dev/null &
    local perf=$!
    sleep 0.5 # perf attached
    before=$(cpu_ticks "$pid")
    t0=$(date +%s.%N)
    sleep "$((SECS - 1))"
    after=$(cpu_ticks "$pid")
    t1=$(date +%s.%N)
    wait "$perf"
    [ -z "${KEEP:-}" ] || { mkdir -p "$KEEP" && cp "$data" "$KEEP/"; }
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')
    wait "$wrk"
    rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$name.wrk")
    grep -q "Non-2xx" "$WORK/$name.wrk" && { echo "cpu-split.sh: $name answered non-2xx" >&2; exit 1; }
    kernel=$(perf report -i "$data" --no-children --sort dso -g none 2>/dev/null |
        awk '/\[kernel.kallsyms\]/ {gsub("%","",$1); print $1}')
    user=$(awk -v k="$kernel" 'BEGIN {printf "%.2f", 100 - k}')
    # CPU time the process used in the window (utime + stime), over the requests in it.
    total=$(awk -v r="$rps" -v s="$secs" -v t="$((after - before))" -v hz="$(getconf CLK_TCK)" \
        'BEGIN {printf "%.1f", t / hz * 1e6 / (r * s)}')
    printf '%-12s busy %3.0f%% of its core\n' "$name" "$(awk -v t="$((after - before))" -v s="$secs" \
        -v hz="$(getconf CLK_TCK)" 'BEGIN {print 100 * t / hz / s}')"
    printf '%-12s %9.0f rps  %5.1f µs/request: kernel %5.2f%% (%4.1f µs), user %5.2f%% (%4.1f µs)\n' \
        "$name" "$rps" "$total" "$kernel" "$(awk -v t="$total" -v k="$kernel" 'BEGIN {print t * k / 100}')" \
        "$user" "$(awk -v t="$total" -v u="$user" 'BEGIN {print t * u / 100}')"
    perf report -i "$data" --children --sort sym -g none 2>/dev/null |
        awk '$NF ~ /^(__x64_sys_(sendto|recvfrom|epoll_wait|write|futex|clock_gettime)|do_writev|ksys_write)$/ {
            printf "             %-22s %6s of its CPU\n", $NF, $1 }'
}

GW_PORT=$(free_port)
taskset -c 1 env -u RUST_LOG "$GATEWAY" serve --listen "127.0.0.1:$GW_PORT" \
    --admin-listen "127.0.0.1:$(free_port)" --upstream "http://127.0.0.1:$NGINX_PORT" \
    --policies "$ROOT/policies/demo.toml" --log-format json 2>"$WORK/gateway.log" >/dev/null &
GW=$!
PIDS+=($GW)
wait_port "$GW_PORT"
measure dcr-gateway "$GW" "$GW_PORT"
kill "$GW"; wait "$GW" 2>/dev/null || true

HP_PORT=$(free_port)
{ haproxy_head 1 "$HP_PORT"; haproxy_tail "$NGINX_PORT"; } >"$WORK/haproxy.cfg"
taskset -c 1 haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
HP=$!
PIDS+=($HP)
wait_port "$HP_PORT"
measure haproxy "$HP" "$HP_PORT"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
