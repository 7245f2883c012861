#!/usr/bin/env bash
# Instructions per request, independent of machine load: the release gateway under
# valgrind's callgrind behind the same nginx stand-in as bench/compare.sh; counters are zeroed
# after a warm-up, then N requests of one kind are sent at a low fixed rate (vegeta) and the
# profile is dumped. Prints instructions per request and the top functions (inclusive).
#
#   bench/profile.sh [one|many|get] [N] [BINARY]
#     one   POST registration, one token repeated (verified-token cache hit)   (default)
#     many  POST registration, N distinct tokens
#     get   GET on a non-registration path
# CORE (default 1) is the CPU the gateway runs on. Needs valgrind, nginx, vegeta (bench/compare.sh
# installs the last two). Keeps the profile in target/callgrind/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
KIND=${1:-one}
N=${2:-2000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
GATEWAY=${3:-$CARGO_TARGET_DIR/release/dcr-gateway}
VEGETA=$(command -v vegeta || echo "${GOPATH:-$HOME/go}/bin/vegeta")
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
[ -x "$GATEWAY" ] || cargo build --quiet --release --bin dcr-gateway
[ -x "$CARGO_TARGET_DIR/release/examples/bench_tokens" ] || cargo build --quiet --release --example bench_tokens
OUT=$CARGO_TARGET_DIR/callgrind
# The gateway on one CPU, as in bench/compare.sh's one-core rows (its runtime then has one
# thread; see runtime_builder in src/main.rs).
CORE=${CORE:-1}
mkdir -p "$OUT"

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_work dcr-profile

NGINX_PORT=$(free_port)
UP=http://127.0.0.1:$NGINX_PORT
REG_PATH=/realms/demo/clients-registrations/default
printf '%s' '{"client_name":"bench123","redirect_uris":["https://app.example.com/cb"]}' >"$WORK/body.json"
"$CARGO_TARGET_DIR/release/examples/bench_tokens" "$WORK" "$UP/realms/demo" "$([ "$KIND" = many ] && echo "$N" || echo 1)"
nginx_upstream "$WORK" "$NGINX_PORT"
PIDS+=("$NGINX_PID")

PORT=$(free_port)
taskset -c "$CORE" env -u RUST_LOG valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.%p" \
    "$GATEWAY" serve --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$(free_port)" \
    --upstream "$UP" --policies "$ROOT/policies/demo.toml" --log-format json \
    2>"$WORK/gateway.log" >/dev/null &
PID=$!
PIDS+=($PID)
wait_port "$PORT"

targets() {
    case $KIND in
        get) printf 'GET http://127.0.0.1:%s/realms/demo/account\n\n' "$PORT" ;;
        *) while read -r t || [ -n "$t" ]; do
               printf 'POST http://127.0.0.1:%s%s\nAuthorization: Bearer %s\nContent-Type: application/json\n@%s\n\n' \
                   "$PORT" "$REG_PATH" "$t" "$WORK/body.json"
           done <"$WORK/$([ "$KIND" = many ] && echo tokens.txt || echo token.txt)" ;;
    esac
}
targets >"$WORK/targets.txt"
# Warm-up with the one token (JWKS fetch, connections, lazily built state), then zero.
printf 'POST http://127.0.0.1:%s%s\nAuthorization: Bearer %s\nContent-Type: application/json\n@%s\n' \
    "$PORT" "$REG_PATH" "$(cat "$WORK/token.txt")" "$WORK/body.json" >"$WORK/warm.txt"
"$VEGETA" attack -rate=50 -duration=4s -targets="$WORK/warm.txt" | "$VEGETA" report -type=text | grep -E 'Status|Success' >&2
sleep 1
callgrind_control -z "$PID" >/dev/null
RATE=100
"$VEGETA" attack -rate=$RATE -duration="$((N / RATE))s" -targets="$WORK/targets.txt" >"$WORK/res.bin"
"$VEGETA" report -type=text <"$WORK/res.bin" | grep -E 'Requests|Status|Success' >&2
sleep 1
callgrind_control -d "$PID" >/dev/null
sleep 1
DUMP=$(ls -t "$OUT"/callgrind."$PID".* | head -1)
SENT=$(( (N / RATE) * RATE ))
TOTAL=$(callgrind_annotate "$DUMP" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done {gsub(",","",$1); print $1; done = 1}')
echo "kind=$KIND requests=$SENT instructions=$TOTAL per_request=$((TOTAL / SENT))"
echo "profile: $DUMP   (callgrind_annotate --inclusive=yes $DUMP)"
callgrind_annotate --inclusive=yes "$DUMP" 2>/dev/null | sed -n '/^Ir/,$p' | head -60 || true
