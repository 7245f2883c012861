#!/usr/bin/env bash
# A/B of gateway builds on compare.sh's rows, interleaved: each round runs every binary in turn
# (alone on core 1, nginx and wrk `-t1 -c32` on core 0, policies/demo.toml, JSON log to a file),
# so that the host's drift between runs falls on all of them alike. Prints rps per round and
# binary, then the mean and range per binary and row.
#
#   bench/ab.sh OLD NEW [MORE...]        # e.g. a copy of the last release build and the new one
#   ROUNDS=4 SECS=6 ROWS="one get many" bench/ab.sh A B
#     one   registration, one token repeated (verified-token cache hit)
#     get   GET on a non-registration path
#     many  registration, TOKENS (default 40,000) distinct tokens
#
# Needs nginx and wrk (bench/compare.sh installs them) and the bench_tokens example.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
(($# >= 2)) || { sed -n '2,12p' "$0" >&2; exit 2; }
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-6}
ROWS=${ROWS:-one get}
TOKENS=${TOKENS:-40000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
for tool in nginx wrk taskset; do
    command -v "$tool" >/dev/null || { echo "ab.sh: $tool is missing" >&2; exit 1; }
done
for bin in "$@"; do
    [ -x "$bin" ] || { echo "ab.sh: $bin is not an executable" >&2; exit 1; }
done
[ -x "$CARGO_TARGET_DIR/release/examples/bench_tokens" ] || cargo build --quiet --release --example bench_tokens

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_work dcr-ab

NGINX_PORT=$(free_port)
UP=http://127.0.0.1:$NGINX_PORT
REG_PATH=/realms/demo/clients-registrations/default
"$CARGO_TARGET_DIR/release/examples/bench_tokens" "$WORK" "$UP/realms/demo" \
    "$([[ " $ROWS " == *" many "* ]] && echo "$TOKENS" || echo 1)" >/dev/null
printf '%s' '{"client_name":"bench123","redirect_uris":["https://app.example.com/cb"]}' >"$WORK/body.json"
wrk_tokens_script "$WORK/tokens.lua"
nginx_upstream "$WORK" "$NGINX_PORT"
PIDS+=("$NGINX_PID")

RESULTS=$WORK/results.txt
: >"$RESULTS"
for round in $(seq 1 "$ROUNDS"); do
    for i in $(seq 1 $#); do
        bin=${!i}
        port=$(free_port)
        taskset -c 1 env -u RUST_LOG "$bin" serve --listen "127.0.0.1:$port" \
            --admin-listen "127.0.0.1:$(free_port)" --upstream "$UP" \
            --policies "$ROOT/policies/demo.toml" --log-format json 2>"$WORK/gateway.log" >/dev/null &
        gw=$!
        wait_port "$port"
        for row in $ROWS; do
            case $row in
                get) args=("http://127.0.0.1:$port/realms/demo/account") ;;
                one) args=(-s "$WORK/tokens.lua" "http://127.0.0.1:$port$REG_PATH" -- "$REG_PATH" "$WORK/body.json" "$WORK/token.txt") ;;
                many) args=(-s "$WORK/tokens.lua" "http://127.0.0.1:$port$REG_PATH" -- "$REG_PATH" "$WORK/body.json" "$WORK/tokens.txt") ;;
                *) echo "ab.sh: unknown row $row" >&2; exit 2 ;;
            esac
            taskset -c 0 wrk -t1 -c32 -d1s "${args[@]}" >/dev/null # warm-up
            out=$(taskset -c 0 wrk -t1 -c32 -d"${SECS}s" "${args[@]}")
            if grep -q "Non-2xx" <<<"$out"; then
                echo "ab.sh: $bin answered non-2xx on row $row" >&2
                exit 1
            fi
            rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
            printf 'round %s  %-5s %10.0f rps  %s\n' "$round" "$row" "$rps" "$bin"
            printf '%s %s %s\n' "$i" "$row" "$rps" >>"$RESULTS"
        done
        kill -9 "$gw" 2>/dev/null || true # no drain delay
        wait "$gw" 2>/dev/null || true
    done
done
echo
for i in $(seq 1 $#); do
    for row in $ROWS; do
        awk -v i="$i" -v row="$row" -v bin="${!i}" '$1 == i && $2 == row {
                n++; s += $3; if (min == "" || $3 < min) min = $3; if ($3 > max) max = $3 }
            END { printf "%-5s mean %8.0f rps  (%.0f to %.0f over %d rounds)  %s\n", row, s / n, min, max, n, bin }' "$RESULTS"
    done
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
