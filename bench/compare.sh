#!/usr/bin/env bash
# dcr-gateway against HAProxy, side by side in one run (issue 10).
#
#   bench/compare.sh [--quick] [--json FILE]
#
# One nginx upstream stand-in (answers 201 to anything, serves the JWKS) on core 0 with the load
# generator; the proxy under test alone on core 1 (`taskset -c 1`): HAProxy 2.6 (`nbthread 1`,
# plain, and `jwt_verify` RS256 with alg/iss/exp ACLs), and dcr-gateway (release build,
# policies/demo.toml, `--log-format json` to a file). Every row is wrk `-t1 -c32` for ROW_SECONDS
# (default 7) on POST /realms/demo/clients-registrations/default with a 73-byte
# ClientRepresentation and an RS256 (2048-bit) token, unless it says otherwise. Then a fixed-rate
# latency row (vegeta, RATE rps, default 5000), a two-core row, the gateway's RSS, and paired
# rounds (PAIR_ROUNDS, default 3): HAProxy and the gateway loaded in turn, back to back, so that
# the host's drift falls on both (the ratios to judge the goals on; see below).
# Prints the tables with ratios to HAProxy and writes a JSON result (default
# target/bench-compare.json). Tokens come from `cargo run --example bench_tokens` (the project's
# testkit key code). Installs nothing but Debian packages (haproxy nginx wrk) and vegeta (a Go
# module, pinned) when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

SECS=${ROW_SECONDS:-7}
RATE=${RATE:-5000}
TOKENS=${TOKENS:-40000}
VEGETA_VERSION=v12.13.0
JSON_OUT=$ROOT/target/bench-compare.json
while [ $# -gt 0 ]; do
    case $1 in
        --quick) SECS=3; TOKENS=4000; PAIR_ROUNDS=${PAIR_ROUNDS:-1}; PAIR_SECONDS=${PAIR_SECONDS:-3} ;;
        --json) JSON_OUT=$2; shift ;;
        *) echo "usage: bench/compare.sh [--quick] [--json FILE]" >&2; exit 2 ;;
    esac
    shift
done

say() { printf '== %s\n' "$*" >&2; }

# --- tools ------------------------------------------------------------------------------------
need_apt=()
for tool in haproxy nginx wrk taskset jq curl; do
    command -v "$tool" >/dev/null || need_apt+=("$tool")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    pkgs=()
    for t in "${need_apt[@]}"; do
        case $t in taskset) pkgs+=(util-linux) ;; *) pkgs+=("$t") ;; esac
    done
    say "installing ${pkgs[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
VEGETA=$(command -v vegeta || echo "${GOPATH:-$HOME/go}/bin/vegeta")
if [ ! -x "$VEGETA" ]; then
    command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
    if ! command -v go >/dev/null; then
        say "installing golang-go"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null
    fi
    say "installing vegeta $VEGETA_VERSION"
    go install "github.com/tsenart/vegeta/v12@$VEGETA_VERSION"
fi
CORES=$(nproc)
if [ "$CORES" -lt 2 ]; then
    echo "bench/compare.sh needs two cores (one for the proxy, one for wrk and nginx)" >&2
    exit 2
fi

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
say "building the release binary and the token minter"
cargo build --quiet --release --bin dcr-gateway
cargo build --quiet --release --example bench_tokens
GATEWAY=$CARGO_TARGET_DIR/release/dcr-gateway

# --- work dir, ports, processes ---------------------------------------------------------------
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_work dcr-bench

NGINX_PORT=$(free_port)
UP=http://127.0.0.1:$NGINX_PORT
ISSUER=$UP/realms/demo
REG_PATH=/realms/demo/clients-registrations/default
OTHER_PATH=/realms/demo/account
BODY='{"client_name":"bench123","redirect_uris":["https://app.example.com/cb"]}'
printf '%s' "$BODY" >"$WORK/body.json"

say "minting $TOKENS tokens"
"$CARGO_TARGET_DIR/release/examples/bench_tokens" "$WORK" "$ISSUER" "$TOKENS"
TOKEN=$(cat "$WORK/token.txt")

nginx_upstream "$WORK" "$NGINX_PORT"
PIDS+=("$NGINX_PID")

wrk_tokens_script "$WORK/tokens.lua"

# --- measuring --------------------------------------------------------------------------------
ROWS=$WORK/rows.jsonl
: >"$ROWS"

# wrk on core 0; prints requests/s. Args: label, base URL, then wrk's own (script, path...).
# A warm-up of one second precedes every row (connections, JWKS, caches).
run_wrk() {
    local label=$1 url=$2 kind=$3
    shift 3
    local args=(-t1 -c32 --latency)
    case $kind in
        post_one) args+=(-s "$WORK/tokens.lua" "$url$REG_PATH" -- "$REG_PATH" "$WORK/body.json" "$WORK/token.txt") ;;
        post_many) args+=(-s "$WORK/tokens.lua" "$url$REG_PATH" -- "$REG_PATH" "$WORK/body.json" "$WORK/tokens.txt") ;;
        get_other) args=(-t1 -c32 --latency "$url$OTHER_PATH") ;;
        *) return 1 ;;
    esac
    taskset -c 0 wrk -d1s "${args[@]}" >/dev/null 2>&1 || true
    local out
    out=$(taskset -c 0 wrk -d"${SECS}s" "${args[@]}" 2>&1)
    local rps p99 errors
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    errors=$(awk '/Non-2xx or 3xx responses:/ {print $NF} /Socket errors:/ {s=$0} END {}' <<<"$out")
    errors=${errors:-0}
    say "$(printf '%-58s %10s rps  p99 %-8s non-2xx %s' "$label" "$rps" "$p99" "$errors")"
    jq -nc --arg l "$label" --argjson rps "${rps:-0}" --arg p99 "$p99" --argjson non2xx "$errors" \
        '{"label": $l, rps: $rps, wrk_p99: $p99, non_2xx: $non2xx}' >>"$ROWS"
}

# vegeta at a fixed rate on core 0; records p50/p99 in ms. An attempt whose answers fall behind
# the rate (under 95 % of it answered, or any failure) measured a queue, not latency: on this
# host that is usually vegeta itself that stopped reading its answers (bench/stall.sh shows
# it), so the row is tried again, up to RATE_ATTEMPTS (default 3) times; every attempt is
# printed and kept in the JSON result ("earlier"), and the table names the ones that fell behind.
# jq: whether a fixed-rate result (throughput, success, rate) fell behind its rate.
BEHIND='((.throughput // 0) < 0.95 * (.rate // 0) or (.success // 0) < 1)'
run_rate() {
    local label=$1 url=$2
    local target=$WORK/target.txt
    printf 'POST %s%s\nAuthorization: Bearer %s\nContent-Type: application/json\n@%s\n' \
        "$url" "$REG_PATH" "$TOKEN" "$WORK/body.json" >"$target"
    local attempt attempts=${RATE_ATTEMPTS:-3} earlier='[]' report p50 p99 success throughput
    for attempt in $(seq "$attempts"); do
        taskset -c 0 "$VEGETA" attack -rate="$RATE" -duration=1s -targets="$target" >/dev/null
        report=$(taskset -c 0 "$VEGETA" attack -rate="$RATE" -duration="${SECS}s" -targets="$target" |
            "$VEGETA" report -type=json)
        p50=$(jq '.latencies["50th"] / 1e6' <<<"$report")
        p99=$(jq '.latencies["99th"] / 1e6' <<<"$report")
        success=$(jq '.success' <<<"$report")
        throughput=$(jq '.throughput | round' <<<"$report")
        say "$(printf '%-58s p50 %.3f ms  p99 %.3f ms  success %s  throughput %s rps  (attempt %s)' "$label @ $RATE rps" "$p50" "$p99" "$success" "$throughput" "$attempt")"
        if [ "$attempt" -ge "$attempts" ] ||
            jq -e --argjson rate "$RATE" "(. + {rate: \$rate}) | $BEHIND | not" <<<"$report" >/dev/null; then
            break
        fi
        earlier=$(jq -c --argjson p99 "$p99" --argjson success "$success" --argjson throughput "$throughput" \
            '. + [{p99_ms: $p99, success: $success, throughput: $throughput}]' <<<"$earlier")
    done
    jq -nc --arg l "$label" --argjson rate "$RATE" --argjson p50 "$p50" --argjson p99 "$p99" --argjson success "$success" \
        --argjson throughput "$throughput" --argjson earlier "$earlier" \
        '{"label": $l, rate: $rate, p50_ms: $p50, p99_ms: $p99, success: $success, throughput: $throughput, earlier: $earlier}' >>"$ROWS"
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# HAProxy. Args: mode (plain|jwt), cpus, threads. Sets HAPROXY_PID and HAPROXY_URL.
start_haproxy() {
    local mode=$1 cpus=$2 threads=$3 port
    port=$(free_port)
    {
        haproxy_head "$threads" "$port"
        if [ "$mode" = jwt ]; then
            cat <<EOF
    http-request deny deny_status 401 unless { req.hdr(authorization) -m beg "Bearer " }
    http-request set-var(txn.bearer) http_auth_bearer
    http-request set-var(txn.jwt_alg) var(txn.bearer),jwt_header_query('\$.alg')
    http-request set-var(txn.jwt_iss) var(txn.bearer),jwt_payload_query('\$.iss')
    http-request set-var(txn.jwt_exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
    http-request deny deny_status 401 unless { var(txn.jwt_alg) -m str RS256 }
    http-request deny deny_status 401 unless { var(txn.jwt_iss) -m str $ISSUER }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.jwt_alg,"$WORK/pub.pem") -m int 1 }
    http-request set-var(txn.now) date()
    http-request deny deny_status 401 if { var(txn.jwt_exp),sub(txn.now) -m int lt 0 }
EOF
        fi
        haproxy_tail "$NGINX_PORT"
    } >"$WORK/haproxy-$mode.cfg"
    taskset -c "$cpus" haproxy -db -f "$WORK/haproxy-$mode.cfg" >"$WORK/haproxy-$mode.log" 2>&1 &
    HAPROXY_PID=$!
    PIDS+=("$HAPROXY_PID")
    HAPROXY_URL=http://127.0.0.1:$port
    wait_port "$port"
}

# The gateway. Args: cpus. Sets GW_PID, GW_URL, GW_ADMIN.
start_gateway() {
    local cpus=$1 port admin
    port=$(free_port)
    admin=$(free_port)
    # The load generator is one address: the gateway's per-client caps (256 connections, 256
    # requests in flight) are raised to HAProxy's maxconn, as a load balancer in
    # trusted_proxies would be exempt from them.
    printf '%s\n' 'max_connections = 4096' 'max_connections_per_peer = 4096' \
        'max_in_flight = 4096' 'max_in_flight_per_peer = 4096' >"$WORK/gateway.toml"
    env -u RUST_LOG taskset -c "$cpus" "$GATEWAY" serve --config "$WORK/gateway.toml" \
        --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
        --upstream "$UP" --policies "$ROOT/policies/demo.toml" --log-format json \
        2>"$WORK/gateway-$cpus.log" >/dev/null &
    GW_PID=$!
    PIDS+=("$GW_PID")
    GW_URL=http://127.0.0.1:$port
    GW_ADMIN=http://127.0.0.1:$admin
    wait_port "$port"
}

check_status() {
    local label=$1 want=$2 got
    shift 2
    got=$(curl -s -o /dev/null -w '%{http_code}' "$@")
    if [ "$got" != "$want" ]; then
        echo "$label answered $got, not $want: the setup is wrong" >&2
        exit 1
    fi
}
post() { check_status "$1" "$2" -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' --data-binary @"$WORK/body.json" "$3$REG_PATH"; }

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "machine: $CORES cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"

run_wrk "nginx direct" "$UP" post_one

start_haproxy plain 1 1
post "HAProxy plain" 201 "$HAPROXY_URL"
run_wrk "HAProxy plain proxy" "$HAPROXY_URL" post_one
run_wrk "HAProxy plain proxy, GET non-registration path" "$HAPROXY_URL" get_other
run_rate "HAProxy plain proxy" "$HAPROXY_URL"
stop "$HAPROXY_PID"

start_haproxy jwt 1 1
post "HAProxy jwt_verify" 201 "$HAPROXY_URL"
check_status "HAProxy jwt_verify without a token" 401 -X POST "$HAPROXY_URL$REG_PATH"
run_wrk "HAProxy jwt_verify RS256, one token repeated" "$HAPROXY_URL" post_one
run_wrk "HAProxy jwt_verify RS256, $TOKENS distinct tokens" "$HAPROXY_URL" post_many
run_rate "HAProxy jwt_verify RS256, one token" "$HAPROXY_URL"
stop "$HAPROXY_PID"

start_gateway 1
sleep 0.5
RSS_IDLE=$(rss_kb "$GW_PID")
post "dcr-gateway" 201 "$GW_URL"
check_status "dcr-gateway without a token (anonymous registration not enabled in demo.toml)" 403 -X POST -H 'Content-Type: application/json' --data-binary @"$WORK/body.json" "$GW_URL$REG_PATH"
run_wrk "dcr-gateway, one token repeated" "$GW_URL" post_one
run_wrk "dcr-gateway, $TOKENS distinct tokens" "$GW_URL" post_many
RSS_TOKENS=$(rss_kb "$GW_PID")
run_wrk "dcr-gateway, GET non-registration path" "$GW_URL" get_other
run_rate "dcr-gateway, one token" "$GW_URL"
curl -s "$GW_ADMIN/metrics" | grep -E '^dcr_gateway_token_verifications_total' >"$WORK/verifications.txt" || true
LOG_BYTES=$(stat -c %s "$WORK/gateway-1.log")
LOG_LINES=$(wc -l <"$WORK/gateway-1.log")
stop "$GW_PID"

say "two cores to the proxy (wrk and nginx share them)"
start_haproxy plain 0,1 2
run_wrk "HAProxy plain proxy, nbthread 2, two cores" "$HAPROXY_URL" post_one
stop "$HAPROXY_PID"
start_gateway 0,1
post "dcr-gateway (two cores)" 201 "$GW_URL"
run_wrk "dcr-gateway, one token repeated, two cores" "$GW_URL" post_one
stop "$GW_PID"

# --- paired rounds ----------------------------------------------------------------------------
# The rows above run each proxy once, minutes apart, and this host drifts by up to ±20 % in
# that time, so a single ratio moves by ±0.15 from run to run. Here HAProxy (plain and
# jwt_verify) and the gateway run at once, all on core 1, only one of them loaded at a time;
# each pair of rows runs back to back, in alternating order, PAIR_ROUNDS times (default 3) for
# PAIR_SECONDS (default 5). The ratio of each pair is taken, and the median of the rounds is
# what the goals are judged on.
PAIR_ROUNDS=${PAIR_ROUNDS:-3}
PAIR_SECS=${PAIR_SECONDS:-5}
say "paired rounds: $PAIR_ROUNDS × ${PAIR_SECS}s, HAProxy and the gateway on core 1 at once"
start_haproxy plain 1 1
HP_URL=$HAPROXY_URL
PAIR_PIDS=("$HAPROXY_PID")
start_haproxy jwt 1 1
HJ_URL=$HAPROXY_URL
PAIR_PIDS+=("$HAPROXY_PID")
start_gateway 1
PAIR_PIDS+=("$GW_PID")
post "dcr-gateway (paired)" 201 "$GW_URL"
# One pair: label, HAProxy URL, wrk kind, round. Odd rounds start with HAProxy, even ones with
# the gateway.
run_pair() {
    local what=$1 h_url=$2 kind=$3 round=$4
    if [ $((round % 2)) -eq 1 ]; then
        SECS=$PAIR_SECS run_wrk "pair $round HAProxy $what" "$h_url" "$kind"
        SECS=$PAIR_SECS run_wrk "pair $round dcr-gateway $what" "$GW_URL" "$kind"
    else
        SECS=$PAIR_SECS run_wrk "pair $round dcr-gateway $what" "$GW_URL" "$kind"
        SECS=$PAIR_SECS run_wrk "pair $round HAProxy $what" "$h_url" "$kind"
    fi
}
for round in $(seq "$PAIR_ROUNDS"); do
    run_pair "one token" "$HP_URL" post_one "$round"
    run_pair "GET" "$HP_URL" get_other "$round"
    run_pair "distinct tokens" "$HJ_URL" post_many "$round"
done
stop "${PAIR_PIDS[@]}"

# --- report -----------------------------------------------------------------------------------
rps() { jq -s --arg l "$1" 'map(select(.label == $l))[0].rps // 0' "$ROWS"; }
p99() { jq -s --arg l "$1" 'map(select(.label == $l and .rate != null))[0].p99_ms // 0' "$ROWS"; }
# A fixed-rate row whose answers fell behind the rate measured a queue, not the proxy's latency.
rate_note() {
    jq -rs --arg l "$1" 'map(select(.label == $l and .rate != null))[0] // {} |
        (if '"$BEHIND"'
         then " — fell behind: \(.throughput) rps answered, success \(.success); not a latency figure"
         else "" end) +
        ((.earlier // []) | if length > 0
         then " (attempt \(length + 1); before it \(map("\(.throughput) rps answered, p99 \(.p99_ms | round) ms") | join(", ")))"
         else "" end)' "$ROWS"
}
ratio() { jq -n --argjson a "$1" --argjson b "$2" 'if $b == 0 then 0 else ($a / $b * 100 | round) / 100 end'; }

H_PLAIN=$(rps "HAProxy plain proxy")
H_GET=$(rps "HAProxy plain proxy, GET non-registration path")
H_JWT1=$(rps "HAProxy jwt_verify RS256, one token repeated")
H_JWTN=$(rps "HAProxy jwt_verify RS256, $TOKENS distinct tokens")
G_ONE=$(rps "dcr-gateway, one token repeated")
G_MANY=$(rps "dcr-gateway, $TOKENS distinct tokens")
G_GET=$(rps "dcr-gateway, GET non-registration path")
H_TWO=$(rps "HAProxy plain proxy, nbthread 2, two cores")
G_TWO=$(rps "dcr-gateway, one token repeated, two cores")
P_HJWT=$(p99 "HAProxy jwt_verify RS256, one token")
P_HPLAIN=$(p99 "HAProxy plain proxy")
P_G=$(p99 "dcr-gateway, one token")

# The paired rounds of one kind as JSON: {rounds: [ratio...], median}.
paired() {
    jq -sc --arg w "$1" --argjson n "$PAIR_ROUNDS" '
        def r($who; $i): map(select(.label == "pair \($i) \($who) \($w)"))[0].rps // 0;
        [range(1; $n + 1) as $i | (r("dcr-gateway"; $i)) as $g | (r("HAProxy"; $i)) as $h
         | if $h == 0 then 0 else ($g / $h * 100 | round) / 100 end]
        | {rounds: ., median: (sort | .[(length - 1) / 2 | floor])}' "$ROWS"
}
PAIR_ONE=$(paired "one token")
PAIR_GET=$(paired "GET")
PAIR_MANY=$(paired "distinct tokens")

DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
jq -n --slurpfile rows "$ROWS" --arg date "$DATE" --arg cpu "$CPU" --argjson cores "$CORES" \
    --arg load_start "$LOAD_START" --arg load_end "$LOAD_END" \
    --argjson secs "$SECS" --argjson tokens "$TOKENS" \
    --argjson rss_idle_kb "$RSS_IDLE" --argjson rss_tokens_kb "$RSS_TOKENS" \
    --argjson log_bytes "$LOG_BYTES" --argjson log_lines "$LOG_LINES" \
    --arg verifications "$(cat "$WORK/verifications.txt")" \
    --argjson r_many "$(ratio "$G_MANY" "$H_JWTN")" --argjson r_one "$(ratio "$G_ONE" "$H_PLAIN")" \
    --argjson r_one_jwt "$(ratio "$G_ONE" "$H_JWT1")" --argjson r_get "$(ratio "$G_GET" "$H_GET")" \
    --argjson r_two "$(ratio "$G_TWO" "$G_ONE")" --argjson r_two_h "$(ratio "$H_TWO" "$H_PLAIN")" \
    --argjson p99_added "$(jq -n --argjson g "$P_G" --argjson h "$P_HJWT" '$g - $h')" \
    --argjson pair_one "$PAIR_ONE" --argjson pair_get "$PAIR_GET" --argjson pair_many "$PAIR_MANY" \
    --argjson pair_rounds "$PAIR_ROUNDS" --argjson pair_secs "$PAIR_SECS" \
    '{date: $date, machine: {cpu: $cpu, cores: $cores}, load_average: {start: $load_start, end: $load_end}, row_seconds: $secs, distinct_tokens: $tokens,
      rows: $rows, rss_idle_kb: $rss_idle_kb, rss_after_tokens_kb: $rss_tokens_kb,
      gateway_log: {bytes: $log_bytes, lines: $log_lines}, token_verifications: $verifications,
      ratios: {distinct_vs_haproxy_jwt: $r_many, one_token_vs_haproxy_plain: $r_one,
               one_token_vs_haproxy_jwt: $r_one_jwt, get_vs_haproxy_plain_get: $r_get,
               two_cores_vs_one: $r_two, haproxy_two_cores_vs_one: $r_two_h},
      paired: {rounds: $pair_rounds, row_seconds: $pair_secs, one_token_vs_haproxy_plain: $pair_one,
               get_vs_haproxy_plain_get: $pair_get, distinct_vs_haproxy_jwt: $pair_many},
      p99_added_over_haproxy_jwt_ms: $p99_added}' >"$JSON_OUT"

fmt() { printf "%'.0f" "$1"; }
echo
echo "dcr-gateway vs HAProxy $(haproxy -v | awk 'NR==1 {print $3}'), $DATE, $CORES cores ($CPU), wrk -t1 -c32, ${SECS}s per row"
echo "load average (1, 5, 15 min) at the start: $LOAD_START; at the end: $LOAD_END"
echo
echo "| path | rps | vs HAProxy |"
echo "|---|---|---|"
echo "| nginx direct | $(fmt "$(rps "nginx direct")") | |"
echo "| HAProxy plain proxy | $(fmt "$H_PLAIN") | |"
echo "| HAProxy plain proxy, GET non-registration path | $(fmt "$H_GET") | |"
echo "| HAProxy \`jwt_verify\` RS256 + alg/iss/exp ACLs, one token repeated | $(fmt "$H_JWT1") | |"
echo "| HAProxy \`jwt_verify\`, $(fmt "$TOKENS") distinct tokens | $(fmt "$H_JWTN") | |"
echo "| dcr-gateway, one token repeated (verified-token cache hit) | $(fmt "$G_ONE") | $(ratio "$G_ONE" "$H_JWT1")× jwt, $(ratio "$G_ONE" "$H_PLAIN")× plain (goal ≥ 0.9× plain) |"
echo "| dcr-gateway, $(fmt "$TOKENS") distinct tokens | $(fmt "$G_MANY") | $(ratio "$G_MANY" "$H_JWTN")× jwt (goal ≥ 1.0×) |"
echo "| dcr-gateway, GET on a non-registration path | $(fmt "$G_GET") | $(ratio "$G_GET" "$H_GET")× plain GET (goal ≥ 0.9×) |"
echo "| HAProxy plain, nbthread 2 on two cores (shared with wrk, nginx) | $(fmt "$H_TWO") | $(ratio "$H_TWO" "$H_PLAIN")× its one-core figure |"
echo "| dcr-gateway, one token, two cores (shared with wrk, nginx) | $(fmt "$G_TWO") | $(ratio "$G_TWO" "$G_ONE")× its one-core figure (goal ≥ 1.8×) |"
echo
echo "| paired rounds ($PAIR_ROUNDS × ${PAIR_SECS}s, interleaved) | ratio per round | median | goal |"
echo "|---|---|---|---|"
pair_row() { jq -r --arg what "$1" --arg goal "$2" '"| \($what) | \(.rounds | map(tostring) | join(", ")) | \(.median) | \($goal) |"' <<<"$3"; }
pair_row "dcr-gateway cache hit / HAProxy plain" "≥ 0.9" "$PAIR_ONE"
pair_row "dcr-gateway GET / HAProxy plain GET" "≥ 0.9" "$PAIR_GET"
pair_row "dcr-gateway distinct tokens / HAProxy jwt_verify" "≥ 1.0" "$PAIR_MANY"
echo
echo "| fixed rate $RATE rps (vegeta) | p99 | added over HAProxy jwt |"
echo "|---|---|---|"
ms() { printf '%.3f ms' "$1"; }
echo "| HAProxy plain proxy | $(ms "$P_HPLAIN")$(rate_note "HAProxy plain proxy") | |"
echo "| HAProxy \`jwt_verify\`, one token | $(ms "$P_HJWT")$(rate_note "HAProxy jwt_verify RS256, one token") | |"
ADDED="$(jq -n --argjson g "$P_G" --argjson h "$P_HJWT" '($g - $h) * 1000 | round / 1000') ms (goal ≤ 1 ms)"
behind() { jq -rs --arg l "$1" 'map(select(.label == $l and .rate != null))[0] // {} |
    if '"$BEHIND"' then "behind" else "" end' "$ROWS"; }
if [ -n "$(behind "HAProxy jwt_verify RS256, one token")$(behind "dcr-gateway, one token")" ]; then
    ADDED="n/a: a row fell behind"
fi
echo "| dcr-gateway, one token | $(ms "$P_G")$(rate_note "dcr-gateway, one token") | $ADDED |"
echo
echo "dcr-gateway RSS: idle $((RSS_IDLE / 1024)) MB (goal ≤ 20), after $(fmt "$TOKENS") distinct tokens $((RSS_TOKENS / 1024)) MB (goal ≤ 40)"
echo "dcr-gateway log: $LOG_LINES lines, $((LOG_BYTES / 1024 / 1024)) MB (JSON, to a file)"
echo "JSON result: $JSON_OUT"
