#!/usr/bin/env bash
# How dcr-gateway comes back from a stall under fixed-rate load: vegeta sends RATE (default
# 5,000) registrations per second for 7 s, one token repeated, as bench/compare.sh's fixed-rate
# row; 2 s in, the gateway is stopped (SIGSTOP) for STALL seconds (default 1), as a host that
# stops scheduling it would. Prints, per second of sending, what was sent, what succeeded and
# the mean latency; the gateway's CPU and open connections every half second after the stall;
# and the kernel's listen-queue overflows and SYN retransmissions (nstat). ROUNDS (default 3)
# repeats it on the same gateway.
#
#   bench/stall.sh
#
# Needs nginx, vegeta (bench/compare.sh installs both), ss, nstat, a release build.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
. bench/lib.sh
bench_work dcr-stall
VEGETA=$(command -v vegeta || echo "${GOPATH:-$HOME/go}/bin/vegeta")
RATE=${RATE:-5000}
NGINX_PORT=$(free_port)
UP=http://127.0.0.1:$NGINX_PORT
target/release/examples/bench_tokens "$WORK" "$UP/realms/demo" 1
nginx_upstream "$WORK" "$NGINX_PORT"; PIDS+=("$NGINX_PID")
printf '%s' '{"client_name":"bench123","redirect_uris":["https://app.example.com/cb"]}' >"$WORK/body.json"
# The caps compare.sh uses (the load generator is one address).
printf '%s\n' 'max_connections = 4096' 'max_connections_per_peer = 4096' \
    'max_in_flight = 4096' 'max_in_flight_per_peer = 4096' >"$WORK/gateway.toml"
PORT=$(free_port)
ADMIN=$(free_port)
env -u RUST_LOG taskset -c 1 target/release/dcr-gateway serve --config "$WORK/gateway.toml" \
    --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$ADMIN" --upstream "$UP" \
    --policies "$ROOT/policies/demo.toml" --log-format json 2>"$WORK/gateway.log" >/dev/null &
GW=$!
PIDS+=($GW)
wait_port "$PORT"
printf 'POST http://127.0.0.1:%s/realms/demo/clients-registrations/default\nAuthorization: Bearer %s\nContent-Type: application/json\n@%s\n' \
    "$PORT" "$(cat "$WORK/token.txt")" "$WORK/body.json" >"$WORK/target.txt"

# After the stall: the gateway's CPU ticks per half second, its established connections.
watch_recovery() {
    local k a b
    for k in 1 2 3 4 5 6; do
        a=$(awk '{print $14 + $15}' "/proc/$GW/stat")
        sleep 0.5
        b=$(awk '{print $14 + $15}' "/proc/$GW/stat")
        # Gateway-side sockets: how many, how many hold unread request bytes (Recv-Q), and
        # how many hold answers the client has not read (Send-Q).
        ss -Htn state established "sport = :$PORT" | awk -v k=$k -v cpu=$((b - a)) '
            {n++; if ($1 > 0) unread++; if ($2 > 0) unsent++}
            END {printf "   stall +%.1fs: gateway CPU %d ticks in 0.5 s, %d connections, %d with request bytes unread, %d with answers unread\n", k / 2, cpu, n, unread, unsent}'
        # The client's side of the same connections: answers arrived that vegeta has not read.
        ss -Htn state established "dport = :$PORT" | awk '$1 > 0 {n++} END {printf "      client side: %d connections with an answer vegeta has not read\n", n}'
    done
}

nstat -n
for round in $(seq "${ROUNDS:-3}"); do
    echo "round $round: $RATE rps for 7 s, gateway stopped for ${STALL:-1} s at +2 s"
    taskset -c 0 "$VEGETA" attack -rate="$RATE" -duration=1s -targets="$WORK/target.txt" >/dev/null
    (sleep 2; kill -STOP $GW; sleep "${STALL:-1}"; kill -CONT $GW; watch_recovery) &
    stall=$!
    taskset -c 0 "$VEGETA" attack -rate="$RATE" -duration=7s -targets="$WORK/target.txt" >"$WORK/r.bin"
    wait $stall
    "$VEGETA" encode --to csv <"$WORK/r.bin" | awk -F, '
        NR == 1 {t0 = $1}
        {s = int(($1 - t0) / 1e9); n[s]++; if ($2 == 201) ok[s]++; lat[s] += $3}
        END {for (i = 0; i <= 7; i++) if (n[i]) printf "   sent at +%ds: %5d, succeeded %5d, mean latency %8.1f ms\n", i, n[i], ok[i], lat[i] / n[i] / 1e6}'
    "$VEGETA" report -type=text <"$WORK/r.bin" | grep -E '^(Latencies|Success|Status)' | sed 's/^/   /'
done
echo "kernel, all rounds:"
nstat | grep -E 'ListenOverflows|ListenDrops|TCPSynRetrans' | sed 's/^/   /'
curl -s "http://127.0.0.1:$ADMIN/metrics" | grep -E '^dcr_gateway_connections_refused_total' | sed 's/^/   /'
