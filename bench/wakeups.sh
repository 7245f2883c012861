#!/usr/bin/env bash
# Wake-ups per request, system-wide, for dcr-gateway and HAProxy under the same GET load as
# bench/cpu-split.sh (proxy alone on core 1; wrk -t1 -c32 and nginx on core 0): perf counts
# scheduler wake-ups, context switches, wake-up IPIs and epoll_wait calls for 5 s and divides
# by the requests served. A proxy that spreads its sends over time makes wrk and nginx sleep
# and be woken more often; each remote wake-up is an IPI, paid in the proxy's kernel time.
#
#   bench/wakeups.sh
#
# Needs perf (tracepoints; no PMU needed), haproxy, nginx, wrk, a release build.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
. bench/lib.sh
bench_work dcr-wake
GATEWAY=target/release/dcr-gateway
NGINX_PORT=$(free_port)
nginx_upstream "$WORK" "$NGINX_PORT"; PIDS+=("$NGINX_PID")
EV='sched:sched_wakeup,sched:sched_switch,irq_vectors:reschedule_entry,irq_vectors:call_function_single_entry,syscalls:sys_enter_epoll_wait'
run() {
  local name=$1 port=$2
  taskset -c 0 wrk -t1 -c32 -d9s "http://127.0.0.1:$port/realms/demo/account" >"$WORK/$name.wrk" &
  local w=$!
  sleep 2
  perf stat -a -x, -e "$EV" -o "$WORK/$name.stat" sleep 5 2>/dev/null
  wait $w
  local rps; rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$name.wrk")
  echo "$name rps $rps"
  awk -F, -v r="$rps" '$1 ~ /^[0-9]/ {printf "   %-45s %.3f per request\n", $3, $1/(r*5)}' "$WORK/$name.stat"
}
GW_PORT=$(free_port)
taskset -c 1 env -u RUST_LOG "$GATEWAY" serve --listen "127.0.0.1:$GW_PORT" --admin-listen "127.0.0.1:$(free_port)" --upstream "http://127.0.0.1:$NGINX_PORT" --policies "$ROOT/policies/demo.toml" --log-format json 2>"$WORK/gateway.log" >/dev/null &
GW=$!; PIDS+=($GW); wait_port "$GW_PORT"
run gateway "$GW_PORT"
kill $GW
HP_PORT=$(free_port)
{ haproxy_head 1 "$HP_PORT"; haproxy_tail "$NGINX_PORT"; } >"$WORK/haproxy.cfg"
taskset -c 1 haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
HP=$!; PIDS+=($HP); wait_port "$HP_PORT"
run haproxy "$HP_PORT"
