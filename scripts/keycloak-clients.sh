#!/usr/bin/env bash
# Real RFC 7591 clients against real Keycloak through dcr-gateway's anonymous mode: installs the
# pinned client libraries (tests/clients: @modelcontextprotocol/sdk, openid-client) with npm ci,
# starts a gateway whose realm `demo` registers anonymous clients with the `registrar` service
# account (Keycloak's Trusted Hosts stays at its default), runs tests/clients/anonymous.mjs
# with node's test runner, checks CORS and the anonymous metrics, stops the gateway.
#
#   scripts/keycloak-clients.sh BASE_PORT STATE_DIR
#
# Called by scripts/keycloak-suite.sh while its Keycloak (BASE_PORT, provisioned by
# `keycloak.sh provision`) runs. Ports: gateway BASE_PORT+103, its admin BASE_PORT+104.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
DCR_PROG=keycloak-clients.sh
# shellcheck source=scripts/lib.sh
source "$SCRIPT_DIR/lib.sh"

BASE=${1:?usage: keycloak-clients.sh BASE_PORT STATE_DIR}
STATE=${2:?usage: keycloak-clients.sh BASE_PORT STATE_DIR}/clients
KC_URL="http://127.0.0.1:$BASE"
GW_PORT=$((BASE + 103))
ADMIN_PORT=$((BASE + 104))
GW_URL="http://127.0.0.1:$GW_PORT"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/dcr-gateway"
QUOTA=3

require_cmd node npm curl jq
[[ -x $BIN ]] || die "$BIN is missing: run cargo build first"
rm -rf "$STATE"
mkdir -p "$STATE/policies"

log "installing the pinned clients (npm ci in tests/clients)"
(cd "$ROOT/tests/clients" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >"$STATE/npm.log" 2>&1) ||
    { cat "$STATE/npm.log" >&2; die "npm ci failed"; }
versions=$(cd "$ROOT/tests/clients" && node -e '
  const v = (p) => require(`./node_modules/${p}/package.json`).version;
  console.log(`@modelcontextprotocol/sdk ${v("@modelcontextprotocol/sdk")}, openid-client ${v("openid-client")}, node ${process.version}`);')
log "clients: $versions"

printf 'registrar-secret\n' >"$STATE/registrar-secret"
chmod 600 "$STATE/registrar-secret"
cat >"$STATE/gateway.toml" <<TOML
[jwks]
prefetch = ["demo"]

[realms.demo.registrar]
client_id = "registrar"
secret_file = "$STATE/registrar-secret"
TOML
cat >"$STATE/policies/anonymous.toml" <<TOML
version = 1

[realms.demo]
providers = ["openid-connect"]

[realms.demo.anonymous]
redirect_hosts = ["app.example.com"]

[realms.demo.anonymous.quota]
creates = $QUOTA
window = "1h"

[realms.demo.cors]
origins = ["http://localhost:6274"]
TOML

GW_PID=
cleanup() {
    local rc=$?
    if [[ -n $GW_PID ]]; then
        kill "$GW_PID" 2>/dev/null || true
        wait "$GW_PID" 2>/dev/null || true
    fi
    if [[ $rc -ne 0 ]]; then
        log "client tests failed; last gateway log lines:"
        tail -n 20 "$STATE/gateway.log" >&2 2>/dev/null || true
    fi
    exit "$rc"
}
trap cleanup EXIT

"$BIN" serve --config "$STATE/gateway.toml" \
    --listen "127.0.0.1:$GW_PORT" --admin-listen "127.0.0.1:$ADMIN_PORT" \
    --upstream "$KC_URL" --public-url "$GW_URL" \
    --policies "$STATE/policies" --log-format json 2>"$STATE/gateway.log" &
GW_PID=$!
for ((i = 0; i < 150; i++)); do
    curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN_PORT/readyz" 2>/dev/null && break
    sleep 0.2
done
curl -fsS "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null ||
    die "the anonymous gateway is not ready: $(curl -s "http://127.0.0.1:$ADMIN_PORT/readyz")"

# Trusted Hosts is at its default: Keycloak itself refuses anonymous registration.
th=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' \
    -d '{"redirect_uris":["http://127.0.0.1:1/cb"],"token_endpoint_auth_method":"none"}' \
    "$KC_URL/realms/demo/clients-registrations/openid-connect")
[[ $th == 403 ]] || die "Keycloak answered $th to an anonymous registration; Trusted Hosts should refuse it (403)"

(cd "$ROOT/tests/clients" && GW_URL="$GW_URL" KC_URL="$KC_URL" REALM=demo QUOTA=$QUOTA \
    node --test --test-concurrency=1 anonymous.mjs)

# CORS: a browser client's preflight, answered by the gateway.
pre=$(curl -s -o /dev/null -D - -X OPTIONS -H 'Origin: http://localhost:6274' \
    -H 'Access-Control-Request-Method: POST' -H 'Access-Control-Request-Headers: content-type' \
    "$GW_URL/realms/demo/clients-registrations/openid-connect" | tr -d '\r')
grep -q '^HTTP/1.1 204' <<<"$pre" || die "preflight not answered 204: $pre"
grep -qi '^access-control-allow-origin: http://localhost:6274$' <<<"$pre" || die "preflight lacks the origin: $pre"

metrics=$(curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics")
series() { # NAME LABEL_FILTER: the summed value of matching series
    awk -v n="$1" -v f="$2" 'index($0, n "{") == 1 && index($0, f) { s += $NF } END { print s + 0 }' <<<"$metrics"
}
for check in \
    "dcr_gateway_anonymous_refusals_total reason=\"redirect_uri_not_allowed\" 2" \
    "dcr_gateway_anonymous_refusals_total reason=\"quota_exceeded\" 2" \
    "dcr_gateway_anonymous_registrations_total outcome=\"forwarded\" $QUOTA" \
    "dcr_gateway_registrar_renewals_total result=\"success\" 1"; do
    read -r name filter want <<<"$check"
    got=$(series "$name" "$filter")
    awk -v g="$got" -v w="$want" 'BEGIN { exit !(g >= w) }' || die "$name{$filter} is $got, expected at least $want"
done
grep -q '"credential":"service_account"' "$STATE/gateway.log" || die "no audit line names the lent credential"
if grep -q 'registrar-secret' "$STATE/gateway.log"; then die "the gateway log shows the client secret"; fi
log "anonymous registration with real clients passed ($versions)"
