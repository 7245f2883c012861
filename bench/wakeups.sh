#!/usr/bin/env bash
# Wake-ups and event-loop turns per request, per process, for dcr-gateway and HAProxy under the
# same GET load as bench/cpu-split.sh (proxy alone on core 1; wrk -t1 -c32 and nginx on core 0).
# perf counts, for 4 s and per thread of the proxy, wrk and nginx, the scheduler wake-ups each
# one causes, its context switches and its epoll_wait calls, divided by the requests served;
# then, without perf attached, each proxy's CPU time per request from /proc. A proxy that
# spreads its sends over time makes wrk and nginx go round their event loops more often, with
# fewer events each time.
#
#   bench/wakeups.sh [GATEWAY_BINARY...]
#
# With several binaries (say, the release build and one built from a patched tree), each is
# measured in turn after HAProxy (gateway1, gateway2, ...). ROUNDS (default 2) repeats the set.
# Needs perf (tracepoints; no PMU needed), haproxy, nginx, wrk, a release build.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
. bench/lib.sh
bench_work dcr-wake
BINARIES=("$@")
[ ${#BINARIES[@]} -gt 0 ] || BINARIES=(target/release/dcr-gateway)
for i in "${!BINARIES[@]}"; do echo "gateway$((i + 1)): ${BINARIES[$i]}"; done
TCK=$(getconf CLK_TCK)
NGINX_PORT=$(free_port)
nginx_upstream "$WORK" "$NGINX_PORT"; PIDS+=("$NGINX_PID")
EV='sched:sched_wakeup,sched:sched_switch,syscalls:sys_enter_epoll_wait'
URL_PATH=/realms/demo/account

# count NAME PORT PID: perf per-thread counts during a 7 s wrk run.
count() {
  local name=$1 port=$2 pid=$3
  taskset -c 0 wrk -t1 -c32 -d7s "http://127.0.0.1:$port$URL_PATH" >"$WORK/$name.wrk" &
  local w=$!
  sleep 2
  perf stat --per-thread -p "$(pgrep -d, -x wrk),$NGINX_PID,$pid" -x, -e "$EV" \
    -o "$WORK/$name.stat" sleep 4 2>/dev/null
  wait $w
  local rps; rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$name.wrk")
  printf '%s, perf attached: %s rps\n' "$name" "$rps"
  # Threads as comm-tid: sum over the threads of one process name, per event.
  awk -F, -v r="$rps" '$2 ~ /^[0-9]/ {sub(/-[0-9]+$/, "", $1); n[$1 " " $4] += $2}
    END {for (k in n) if (n[k] / (r * 4) >= 0.001) {split(k, a, " ");
      printf "   %-16s %-30s %.3f per request\n", a[1], a[2], n[k] / (r * 4)}}' \
    "$WORK/$name.stat" | sort
}

# cpu NAME PORT PID: a 6 s wrk run without perf; rps and the proxy's CPU per request.
cpu() {
  local name=$1 port=$2 pid=$3 u0 s0 u1 s1
  read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
  taskset -c 0 wrk -t1 -c32 -d6s "http://127.0.0.1:$port$URL_PATH" >"$WORK/$name.cpu"
  read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
  awk -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v t="$TCK" -v name="$name" '/requests in/ {n = $1}
    /Requests\/sec/ {printf "%s, no perf: %d rps, CPU per request %.1f us (user %.1f, kernel %.1f)\n",
      name, $2, (u + s) / t / n * 1e6, u / t / n * 1e6, s / t / n * 1e6}' "$WORK/$name.cpu"
}

haproxy_row() {
  local port; port=$(free_port)
  { haproxy_head 1 "$port"; haproxy_tail "$NGINX_PORT"; } >"$WORK/haproxy.cfg"
  taskset -c 1 haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
  local hp=$!; PIDS+=($hp); wait_port "$port"
  count haproxy "$port" $hp
  cpu haproxy "$port" $hp
  stop $hp
}

gateway_row() {
  local bin=$1 name=$2 port; port=$(free_port)
  taskset -c 1 env -u RUST_LOG "$bin" serve --listen "127.0.0.1:$port" \
    --admin-listen "127.0.0.1:$(free_port)" --upstream "http://127.0.0.1:$NGINX_PORT" \
    --policies "$ROOT/policies/demo.toml" --log-format json 2>"$WORK/gateway.log" >/dev/null &
  local gw=$!; PIDS+=($gw); wait_port "$port"
  count "$name" "$port" $gw
  cpu "$name" "$port" $gw
  kill -9 $gw 2>/dev/null; wait $gw 2>/dev/null # SIGTERM would wait out drain_delay (5 s)
}

for _ in $(seq "${ROUNDS:-2}"); do
  haproxy_row
  for i in "${!BINARIES[@]}"; do gateway_row "${BINARIES[$i]}" "gateway$((i + 1))"; done
done
