#!/usr/bin/env bash
# Records the admin REST answers `dcr-gateway doctor` reads, from a real Keycloak, into
# tests/fixtures/doctor/VERSION/ (the unit tests of src/doctor/ replay them).
#
#   flock /work/keycloak.lock scripts/doctor-fixtures.sh VERSION [PORT]
#
# Starts Keycloak (scripts/keycloak.sh), builds realm `doc` with one deliberately broken thing of
# each kind, saves every answer as JSON, stops Keycloak. Secrets and tokens are not recorded.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
DCR_PROG=doctor-fixtures.sh
# shellcheck source=scripts/lib.sh
source "$SCRIPT_DIR/lib.sh"

VERSION=${1:?usage: doctor-fixtures.sh VERSION [PORT]}
PORT=${2:-18080}
STATE="$ROOT/.state/doctor-fixtures-$VERSION"
OUT="$ROOT/tests/fixtures/doctor/$VERSION"
KC="http://127.0.0.1:$PORT"
R=doc
require_cmd curl jq
rm -rf "$STATE" "$OUT"
mkdir -p "$STATE" "$OUT"
trap '"$SCRIPT_DIR/keycloak.sh" stop "$STATE" || true' EXIT
"$SCRIPT_DIR/keycloak.sh" start "$VERSION" "$PORT" "$STATE"

T=
token() {
    T=$(curl -fsS -d grant_type=password -d client_id=admin-cli -d username=admin -d password=admin \
        "$KC/realms/master/protocol/openid-connect/token" | jq -er .access_token)
}
# api METHOD PATH [JSON] — prints the body; fails on HTTP >= 400.
api() {
    local -a a=(-fsS -X "$1" -H "Authorization: Bearer $T")
    [[ -n ${3-} ]] && a+=(-H 'Content-Type: application/json' --data-binary "$3")
    curl "${a[@]}" "$KC/admin/realms$2"
}
# save NAME PATH — records GET PATH as NAME.json (secrets blanked).
save() {
    api GET "$2" | jq 'walk(if type == "object" then (if has("secret") then .secret = "**" else . end) else . end)' >"$OUT/$1.json"
}
cid() { api GET "/$R/clients?clientId=$1" | jq -er '.[0].id'; }
sa() { api GET "/$R/clients/$1/service-account-user" | jq -er .id; }

token
api POST "" "{\"realm\":\"$R\",\"enabled\":true}"
mk() { # CLIENT_ID [EXTRA_JSON]
    local x=${2:-'{}'}
    api POST "/$R/clients" "$(jq -nc --arg c "$1" --argjson x "$x" '{clientId:$c,enabled:true,publicClient:false,serviceAccountsEnabled:true,standardFlowEnabled:false,secret:"s"} + $x')"
}
mk registrar
mk viagroup
mk composite
mk norole
mk noscope '{"fullScopeAllowed":false}'
mk noroles
RM=$(cid realm-management)
role() { api GET "/$R/clients/$RM/roles/$1" | jq -c '[{id,name}]'; }
api POST "/$R/users/$(sa "$(cid registrar)")/role-mappings/clients/$RM" "$(role create-client)"
api POST "/$R/users/$(sa "$(cid noscope)")/role-mappings/clients/$RM" "$(role create-client)"
api POST "/$R/users/$(sa "$(cid noroles)")/role-mappings/clients/$RM" "$(role manage-clients)"
# Through a group.
api POST "/$R/groups" '{"name":"registrars"}'
G=$(api GET "/$R/groups?search=registrars" | jq -er '.[0].id')
api POST "/$R/groups/$G/role-mappings/clients/$RM" "$(role create-client)"
api PUT "/$R/users/$(sa "$(cid viagroup)")/groups/$G" ""
# Through a composite realm role.
api POST "/$R/roles" '{"name":"registrar-role"}'
api POST "/$R/roles/registrar-role/composites" "$(role manage-clients)"
api POST "/$R/users/$(sa "$(cid composite)")/role-mappings/realm" "$(api GET "/$R/roles/registrar-role" | jq -c '[{id,name}]')"
# `roles` removed from the defaults of one client.
ROLES=$(api GET "/$R/client-scopes" | jq -er '.[] | select(.name == "roles") | .id')
api DELETE "/$R/clients/$(cid noroles)/default-client-scopes/$ROLES"
# Initial access tokens: one nearly used up, one expiring.
api POST "/$R/clients-initial-access" '{"expiration":0,"count":1}' >/dev/null
api POST "/$R/clients-initial-access" '{"expiration":600,"count":20}' >/dev/null
# A client policy with the redirect URI enforcer.
api PUT "/$R/client-policies/profiles" '{"profiles":[{"name":"strict","executors":[{"executor":"secure-redirect-uris-enforcer","configuration":{}},{"executor":"confidential-client","configuration":{}}]}]}'
api PUT "/$R/client-policies/policies" '{"policies":[{"name":"dcr","enabled":true,"conditions":[{"condition":"client-updater-context","configuration":{"update-client-source":["ByInitialAccessToken","ByAuthenticatedUser","ByAnonymous"]}}],"profiles":["strict"]}]}'

save realm "/$R"
save clients "/$R/clients"
for c in registrar viagroup composite norole noscope noroles; do
    id=$(cid "$c")
    u=$(sa "$id")
    save "client-$c" "/$R/clients/$id"
    save "sa-$c" "/$R/clients/$id/service-account-user"
    save "effective-$c" "/$R/users/$u/role-mappings/clients/$RM/composite"
    save "realm-effective-$c" "/$R/users/$u/role-mappings/realm/composite"
    save "default-scopes-$c" "/$R/clients/$id/default-client-scopes"
    save "granted-$c" "/$R/clients/$id/evaluate-scopes/scope-mappings/$RM/granted?userId=$u&scope="
    save "example-token-$c" "/$R/clients/$id/evaluate-scopes/generate-example-access-token?userId=$u&scope="
done
save components-registration "/$R/components?type=org.keycloak.services.clientregistration.policy.ClientRegistrationPolicy"
save client-scopes "/$R/client-scopes"
save default-default-client-scopes "/$R/default-default-client-scopes"
save default-optional-client-scopes "/$R/default-optional-client-scopes"
save initial-access "/$R/clients-initial-access"
save keys "/$R/keys"
save client-policies "/$R/client-policies/policies"
save client-profiles "/$R/client-policies/profiles?include-global-profiles=true"
curl -fsS "$KC/realms/$R/.well-known/openid-configuration" | jq . >"$OUT/well-known.json"
curl -fsS "$KC/realms/$R/protocol/openid-connect/certs" | jq . >"$OUT/certs.json"

# A service account with only view-realm and view-clients: what may it read?
mk viewer
V=$(cid viewer)
api POST "/$R/users/$(sa "$V")/role-mappings/clients/$RM" "$(api GET "/$R/clients/$RM/roles" | jq -c '[.[] | select(.name == "view-realm" or .name == "view-clients") | {id,name}]')"
VT=$(curl -fsS -d grant_type=client_credentials -d client_id=viewer -d client_secret=s "$KC/realms/$R/protocol/openid-connect/token" | jq -er .access_token)
{
    for p in "/$R" "/$R/clients" "/$R/clients/$(cid registrar)/service-account-user" \
        "/$R/users/$(sa "$(cid registrar)")/role-mappings/clients/$RM/composite" \
        "/$R/clients/$(cid registrar)/evaluate-scopes/generate-example-access-token?userId=$(sa "$(cid registrar)")&scope=" \
        "/$R/clients/$(cid registrar)/evaluate-scopes/scope-mappings/$RM/granted?userId=$(sa "$(cid registrar)")&scope=" \
        "/$R/components?type=org.keycloak.services.clientregistration.policy.ClientRegistrationPolicy" \
        "/$R/clients-initial-access" "/$R/keys" "/$R/client-policies/policies" "/$R/client-policies/profiles"; do
        code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $VT" "$KC/admin/realms$p")
        jq -nc --arg p "${p//$R/\{realm\}}" --arg c "$code" '{path:$p, status:($c|tonumber)}'
    done
} | jq -s . | sed -E 's/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/{id}/g' >"$OUT/viewer-access.json"
log "recorded $(ls "$OUT" | wc -l) answers of Keycloak $VERSION into $OUT"
