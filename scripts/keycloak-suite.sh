#!/usr/bin/env bash
# Runs the real-Keycloak suite for one Keycloak version: starts Keycloak (scripts/keycloak.sh),
# the dcr-gateway binary in front of it, and a Prometheus server scraping the gateway's admin
# port; provisions realm `demo` through the gateway; runs tests/keycloak.rs and
# tests/keycloak_doctor.rs, then the real RFC 7591 clients of scripts/keycloak-clients.sh
# (anonymous mode, node) and scripts/keycloak-clients-oic-kcreg.sh (python oic and kcreg.sh with
# credentials); checks the scraped metrics with promtool; stops everything.
#
#   scripts/keycloak-suite.sh VERSION [BASE_PORT]
#
# Ports: Keycloak BASE_PORT (+1000 management), gateway BASE_PORT+100, its admin BASE_PORT+101,
# Prometheus BASE_PORT+102, Redis (for the replicas that share quotas) a free random port.
# State and logs go to .state/suite-VERSION/. DCR_SUITE_TESTS names the test targets to run
# (default: keycloak keycloak_doctor). GATEWAY_CPU=N runs the gateway on CPU N alone (its
# single-threaded runtime).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
DCR_PROG=keycloak-suite.sh
# shellcheck source=scripts/lib.sh
source "$SCRIPT_DIR/lib.sh"

VERSION=${1:?usage: keycloak-suite.sh VERSION [BASE_PORT]}
BASE=${2:-18080}
KC_PORT=$BASE
GW_PORT=$((BASE + 100))
ADMIN_PORT=$((BASE + 101))
PROM_PORT=$((BASE + 102))
STATE="$ROOT/.state/suite-$VERSION"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/dcr-gateway"

require_cmd curl jq prometheus promtool redis-server redis-cli
[[ -x $BIN ]] || die "$BIN is missing: run cargo build first"
rm -rf "$STATE"
mkdir -p "$STATE"

GW_PID=
PROM_PID=
REDIS_PID=
cleanup() {
    local rc=$?
    [[ -n $REDIS_PID ]] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null
    [[ -n $GW_PID ]] && kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
    [[ -n $PROM_PID ]] && kill "$PROM_PID" 2>/dev/null && wait "$PROM_PID" 2>/dev/null
    "$SCRIPT_DIR/keycloak.sh" stop "$STATE" || true
    if [[ $rc -ne 0 ]]; then
        log "suite for Keycloak $VERSION failed; last gateway log lines:"
        tail -n 30 "$STATE/gateway.log" >&2 2>/dev/null || true
    fi
    exit "$rc"
}
trap cleanup EXIT

wait_http() { # URL SECONDS
    local i
    for ((i = 0; i < $2 * 5; i++)); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.2
    done
    die "no answer from $1 within $2 s"
}

started=$(date +%s)
# Redis on a random free port, without persistence: the quota store of the replica test.
for _ in 1 2 3 4 5; do
    REDIS_PORT=$((20000 + RANDOM % 40000))
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$STATE" --logfile "$STATE/redis.log" &
    REDIS_PID=$!
    for _ in $(seq 25); do
        redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break 2
        sleep 0.2
    done
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=
done
[[ -n $REDIS_PID ]] || die "redis-server did not start"
# Keycloak reads the gateway's X-Forwarded-* headers, and only from the gateway's address.
KC_EXTRA_OPTS="--proxy-headers=xforwarded --proxy-trusted-addresses=127.0.0.1" \
    "$SCRIPT_DIR/keycloak.sh" start "$VERSION" "$KC_PORT" "$STATE"

# GATEWAY_CPU pins the gateway to that one CPU: its runtime is then the single-threaded one
# (src/main.rs), as in a pod limited to one CPU, and the suite checks that it is.
PIN=()
[[ -n ${GATEWAY_CPU:-} ]] && PIN=(taskset -c "$GATEWAY_CPU")
"${PIN[@]}" "$BIN" serve --config "$ROOT/tests/keycloak/gateway.toml" \
    --listen "127.0.0.1:$GW_PORT" --admin-listen "127.0.0.1:$ADMIN_PORT" \
    --upstream "http://127.0.0.1:$KC_PORT" --public-url "http://127.0.0.1:$GW_PORT" \
    --policies "$ROOT/policies" --log-format json 2>"$STATE/gateway.log" &
GW_PID=$!
wait_http "http://127.0.0.1:$ADMIN_PORT/healthz" 20
expected=multi_thread
[[ -n ${GATEWAY_CPU:-} || $(nproc) == 1 ]] && expected=current_thread
for _ in $(seq 20); do
    grep -q "\"runtime\":\"$expected\"" "$STATE/gateway.log" && break
    sleep 0.1
done
grep -q "\"runtime\":\"$expected\"" "$STATE/gateway.log" ||
    die "the gateway did not report the $expected runtime (GATEWAY_CPU=${GATEWAY_CPU:-unset}; log: $STATE/gateway.log)"
log "gateway runtime: $expected${GATEWAY_CPU:+ (pinned to CPU $GATEWAY_CPU)}"

# Provision through the gateway: tokens and initial access tokens carry the public issuer.
"$SCRIPT_DIR/keycloak.sh" provision "http://127.0.0.1:$GW_PORT" "$STATE/env"
wait_http "http://127.0.0.1:$ADMIN_PORT/readyz" 60

cat >"$STATE/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: dcr-gateway
    static_configs:
      - targets: ["127.0.0.1:$ADMIN_PORT"]
YAML
promtool check config "$STATE/prometheus.yml" >/dev/null
prometheus --config.file="$STATE/prometheus.yml" --storage.tsdb.path="$STATE/prom" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$STATE/prometheus.log" 2>&1 &
PROM_PID=$!
wait_http "http://127.0.0.1:$PROM_PORT/-/ready" 30

log "Keycloak $VERSION, gateway and Prometheus up in $(($(date +%s) - started)) s"
# tests/keycloak.rs, then `dcr-gateway doctor` on realms broken on purpose (tests/keycloak_doctor.rs).
# DCR_SUITE_TESTS picks test targets (default: both).
for target in ${DCR_SUITE_TESTS:-keycloak keycloak_doctor}; do
    GW_URL="http://127.0.0.1:$GW_PORT" GW_ADMIN_URL="http://127.0.0.1:$ADMIN_PORT" \
        KC_URL="http://127.0.0.1:$KC_PORT" KC_VERSION="$VERSION" PROM_URL="http://127.0.0.1:$PROM_PORT" \
        KC_ENV_FILE="$STATE/env" REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
        cargo test --test "$target" -- --ignored --test-threads=1
done

"$SCRIPT_DIR/keycloak-clients.sh" "$KC_PORT" "$STATE"
# python oic and Keycloak's kcreg.sh with credentials through this gateway (the forum's case).
"$SCRIPT_DIR/keycloak-clients-oic-kcreg.sh" "http://127.0.0.1:$GW_PORT" "http://127.0.0.1:$KC_PORT" \
    "$VERSION" "$STATE"

curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" >"$STATE/metrics.txt"
promtool check metrics <"$STATE/metrics.txt"
log "Keycloak $VERSION suite passed in $(($(date +%s) - started)) s"
