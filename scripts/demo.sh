#!/usr/bin/env bash
# The quick start: start a real Keycloak and dcr-gateway in front of it, provision realm `demo`,
# and show the two classic failures answered with their fix, then registrations passing.
#
#   scripts/demo.sh            # runs the show, then stops everything (also on failure or Ctrl-C)
#   scripts/demo.sh --keep     # leaves Keycloak (:18880) and the gateway (:8000, admin :9100) running
#
# Ports (checked before anything starts): DEMO_KC_PORT (default 18880; Keycloak's management
# port is DEMO_KC_PORT+1000), DEMO_GW_PORT (8000), DEMO_ADMIN_PORT (9100). The default Keycloak
# port stays clear of the test suites' 18080 and 28080. Builds the release binary (a few minutes
# the first time on a small machine; cargo's progress is shown).
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
DCR_PROG=demo.sh
# shellcheck source=scripts/lib.sh
source "$SCRIPT_DIR/lib.sh"
require_cmd curl jq cargo

VERSION=${KEYCLOAK_VERSION:-26.7.3}
KC_PORT=${DEMO_KC_PORT:-18880}
GW_PORT=${DEMO_GW_PORT:-8000}
ADMIN_PORT=${DEMO_ADMIN_PORT:-9100}
KC=http://127.0.0.1:$KC_PORT
GW=http://127.0.0.1:$GW_PORT
ADMIN=http://127.0.0.1:$ADMIN_PORT
STATE="$ROOT/.state/demo"
KEEP=${1:-}
[[ -z $KEEP || $KEEP == --keep ]] || die "unknown argument '$KEEP' (only --keep)"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/dcr-gateway"
mkdir -p "$STATE"

GW_PID=
KC_STARTED=
# Runs on every exit (success, failure, Ctrl-C): stops what this run started, never failing
# half-way (so a gateway that already died does not leave Keycloak running).
cleanup() {
    local code=$?
    set +e
    if [[ $KEEP == --keep && $code == 0 ]]; then
        return
    fi
    if [[ -n $GW_PID ]] && kill -0 "$GW_PID" 2>/dev/null; then
        kill "$GW_PID" 2>/dev/null
        wait "$GW_PID" 2>/dev/null
    fi
    [[ -n $KC_STARTED ]] && "$SCRIPT_DIR/keycloak.sh" stop "$STATE"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

show() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

# holder PORT — who listens on 127.0.0.1:PORT, when `ss` can tell.
holder() {
    command -v ss >/dev/null || return 0
    ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(([^)]*))' | head -n 1 || true
}

# gateway_died — the gateway's own words, then fail.
gateway_died() {
    local code=0
    wait "$GW_PID" 2>/dev/null || code=$?
    GW_PID=
    log "the gateway exited (code $code); its log ($STATE/gateway.log) ends with:"
    tail -n 20 "$STATE/gateway.log" | sed 's/^/    /' >&2
    die "the gateway did not start: see its error above"
}

# 1. Ports first: a taken port is named, not discovered after minutes of waiting.
taken=()
for spec in "$KC_PORT:Keycloak (DEMO_KC_PORT)" "$((KC_PORT + 1000)):Keycloak's management port (DEMO_KC_PORT+1000)" \
    "$GW_PORT:the gateway's proxy listener (DEMO_GW_PORT)" "$ADMIN_PORT:the gateway's admin listener (DEMO_ADMIN_PORT)"; do
    port=${spec%%:*}
    if port_in_use "$port"; then
        who=$(holder "$port")
        taken+=("port $port, for ${spec#*:}, is taken${who:+ by $who}")
    fi
done
if ((${#taken[@]})); then
    for t in "${taken[@]}"; do log "$t"; done
    die "free the port(s) above or choose others, e.g. DEMO_GW_PORT=8001 DEMO_ADMIN_PORT=9101 DEMO_KC_PORT=18881 $0"
fi

# 2. The release binary, with cargo's progress (the first build takes minutes on 2 cores).
log "building the release binary (cargo build --release; the first build takes a few minutes)"
(cd "$ROOT" && cargo build --release --locked --bin dcr-gateway)
log "built: $("$BIN" --version)"

# 3. Keycloak, then the gateway in front of it.
log "starting Keycloak $VERSION on $KC (fetched with Maven the first time)"
KC_STARTED=1
KC_EXTRA_OPTS="--proxy-headers=xforwarded --proxy-trusted-addresses=127.0.0.1" \
    "$SCRIPT_DIR/keycloak.sh" start "$VERSION" "$KC_PORT" "$STATE"
"$BIN" serve --upstream "$KC" --public-url "$GW" --listen "127.0.0.1:$GW_PORT" \
    --admin-listen "127.0.0.1:$ADMIN_PORT" --policies "$ROOT/policies" 2>"$STATE/gateway.log" &
GW_PID=$!
for _ in $(seq 100); do
    kill -0 "$GW_PID" 2>/dev/null || gateway_died
    curl -fsS -o /dev/null "$ADMIN/healthz" 2>/dev/null && break
    sleep 0.1
done
curl -fsS -o /dev/null "$ADMIN/healthz" || { log "no /healthz from the gateway within 10 s"; tail -n 20 "$STATE/gateway.log" >&2; die "the gateway does not answer"; }
log "gateway $GW in front of $KC (admin $ADMIN, log $STATE/gateway.log)"
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

show "metrics on the admin port: the gateway's decision and what became of each request"
curl -s "$ADMIN/metrics" | grep -E '^dcr_gateway_(decisions_total|build_info)'

kill -0 "$GW_PID" 2>/dev/null || gateway_died
if [[ $KEEP == --keep ]]; then
    log "left running: Keycloak $KC (admin/admin), gateway $GW, admin $ADMIN; stop with: scripts/keycloak.sh stop $STATE; kill $GW_PID"
fi
