#!/usr/bin/env bash
# The quick start: start a real Keycloak and dcr-gateway in front of it, provision realm `demo`,
# and show the two classic failures answered with their fix, then registrations passing.
#
#   scripts/demo.sh            # runs the show, then stops everything
#   scripts/demo.sh --keep     # leaves Keycloak (:18080) and the gateway (:8000, admin :9100) running
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
DCR_PROG=demo.sh
# shellcheck source=scripts/lib.sh
source "$SCRIPT_DIR/lib.sh"
require_cmd curl jq cargo

VERSION=${KEYCLOAK_VERSION:-26.7.3}
KC=http://127.0.0.1:18080
GW=http://127.0.0.1:8000
STATE="$ROOT/.state/demo"
KEEP=${1:-}
mkdir -p "$STATE"

GW_PID=
cleanup() {
    [[ $KEEP == --keep ]] && return
    [[ -n $GW_PID ]] && kill "$GW_PID" 2>/dev/null
    "$SCRIPT_DIR/keycloak.sh" stop "$STATE" || true
}
trap cleanup EXIT

show() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

(cd "$ROOT" && cargo build --quiet)
KC_EXTRA_OPTS="--proxy-headers=xforwarded --proxy-trusted-addresses=127.0.0.1" \
    "$SCRIPT_DIR/keycloak.sh" start "$VERSION" 18080 "$STATE"
"$ROOT/target/debug/dcr-gateway" serve --upstream "$KC" --public-url "$GW" \
    --policies "$ROOT/policies" 2>"$STATE/gateway.log" &
GW_PID=$!
sleep 1
"$SCRIPT_DIR/keycloak.sh" provision "$GW" "$STATE/env" # through the gateway: tokens carry its URL
# shellcheck disable=SC1091
source "$STATE/env"

token() { curl -s -d grant_type=client_credentials -d "client_id=$1" -d "client_secret=$1-secret" \
    "$GW/realms/demo/protocol/openid-connect/token" | jq -r .access_token; }

show "a service account WITHOUT realm-management/create-client tries to register (the forum case)"
curl -s -X POST -H "Authorization: Bearer $(token norole)" -H 'Content-Type: application/json' \
    "$GW/realms/demo/clients-registrations/default" -d '{"clientId":"testing_create_client"}' | jq .

show "the same with a service account that has it"
curl -s -X POST -H "Authorization: Bearer $(token registrar)" -H 'Content-Type: application/json' \
    "$GW/realms/demo/clients-registrations/default" -d '{"clientId":"demo-client-1"}' |
    jq '{clientId, registrationAccessToken: (.registrationAccessToken[0:24] + "…")}'

show "an initial access token (HS512, never 'Unsupported algorithm') registers an RFC 7591 client"
curl -s -X POST -H "Authorization: Bearer $KC_IAT" -H 'Content-Type: application/json' \
    "$GW/realms/demo/clients-registrations/openid-connect" \
    -d '{"client_name":"mcp-client","redirect_uris":["http://127.0.0.1:33418/callback"],"token_endpoint_auth_method":"none"}' |
    jq '{client_id, client_name, registration_client_uri}'

show "a redirect URI the policy refuses never reaches Keycloak"
curl -s -X POST -H "Authorization: Bearer $KC_IAT" -H 'Content-Type: application/json' \
    "$GW/realms/demo/clients-registrations/openid-connect" \
    -d '{"client_name":"evil","redirect_uris":["https://evil.example.net/cb"]}' | jq '{error, reason, hint}'

show "metrics on the admin port"
curl -s http://127.0.0.1:9100/metrics | grep -E '^dcr_gateway_decisions_total' | head -5

if [[ $KEEP == --keep ]]; then
    log "left running: Keycloak $KC (admin/admin), gateway $GW, admin http://127.0.0.1:9100; stop with: scripts/keycloak.sh stop $STATE; kill $GW_PID"
fi
