#!/usr/bin/env bash
# Two more real clients through dcr-gateway against real Keycloak, with credentials (no
# anonymous mode): python `oic` (pyoidc, tests/clients/python/test_oic.py, pinned in
# requirements.txt) and Keycloak's own kcreg.sh from the client CLI distribution of the
# Keycloak version under test. Each registers clients (201, client id returned) with a
# service account that holds create-client and with an initial access token, then shows the
# forum's case: the service account `norole` (no realm-management/create-client) refused,
# with the fix in what the client itself prints, and, for contrast, the same refusal straight
# from Keycloak (`Forbidden`). The log gets lines `oic raises: ...` and `kcreg prints: ...` with
# what each client showed.
#
#   scripts/keycloak-clients-oic-kcreg.sh GW_URL KC_URL VERSION STATE_DIR
#
# Called by scripts/keycloak-suite.sh with its gateway (policies/) in front of Keycloak
# VERSION, realm demo provisioned by `keycloak.sh provision` (registrar with create-client,
# norole without). The python packages are downloaded once into $DCR_CACHE/python and
# installed from there (pip --no-index) into a venv under STATE_DIR/oic-kcreg; the CLI zip is
# cached by `keycloak.sh fetch-cli`.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
DCR_PROG=keycloak-clients-oic-kcreg.sh
# shellcheck source=scripts/lib.sh
source "$SCRIPT_DIR/lib.sh"

usage="usage: keycloak-clients-oic-kcreg.sh GW_URL KC_URL VERSION STATE_DIR"
GW_URL=${1:?$usage}
GW_URL=${GW_URL%/}
KC_URL=${2:?$usage}
KC_URL=${KC_URL%/}
VERSION=${3:?$usage}
STATE=${4:?$usage}/oic-kcreg
REALM=demo
PYDIR="$ROOT/tests/clients/python"
REQS="$PYDIR/requirements.txt"

require_cmd python3 curl jq
rm -rf "$STATE"
mkdir -p "$STATE"

# ------------------------------------------------------------------ python oic in a venv
python3 -m venv "$STATE/venv" >"$STATE/venv.log" 2>&1 ||
    { cat "$STATE/venv.log" >&2; die "python3 -m venv failed (on Debian: apt-get install python3-venv)"; }
PY="$STATE/venv/bin/python"
pyver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
# Wheels depend on the python version; the set on the pinned list.
wheels="$(dcr_cache_dir)/python/py$pyver-$(sha256sum "$REQS" | cut -c1-16)"
if [[ ! -f $wheels/.complete ]]; then
    log "downloading the pinned python packages (tests/clients/python/requirements.txt) into $wheels"
    mkdir -p "$(dirname "$wheels")"
    tmp=$(mktemp -d "$wheels.XXXXXX")
    "$PY" -m pip download -q --disable-pip-version-check --only-binary=:all: --no-deps -r "$REQS" -d "$tmp" >"$STATE/pip.log" 2>&1 ||
        { cat "$STATE/pip.log" >&2; rm -rf -- "$tmp"; die "pip download failed"; }
    touch "$tmp/.complete"
    mv -T "$tmp" "$wheels" 2>/dev/null || rm -rf -- "$tmp" # another run won the race: keep its copy
fi
# --no-index: exactly the cached wheels (no builds); --no-deps plus pip check: the list is complete.
"$PY" -m pip install -q --disable-pip-version-check --no-index --find-links "$wheels" --only-binary=:all: --no-deps \
    -r "$REQS" >"$STATE/pip.log" 2>&1 || { cat "$STATE/pip.log" >&2; die "pip install failed"; }
"$PY" -m pip check --disable-pip-version-check >"$STATE/pip.log" 2>&1 ||
    { cat "$STATE/pip.log" >&2; die "requirements.txt misses a dependency (pip check)"; }
oic_version=$("$PY" -c 'from importlib.metadata import version as v; print(v("oic"))')

# ------------------------------------------------------------------ an initial access token
# Minted through the gateway, so that its issuer is the public URL; two uses: oic and kcreg.
admin=$(curl -fsS --data-urlencode grant_type=password --data-urlencode client_id=admin-cli \
    --data-urlencode "username=${KC_BOOTSTRAP_ADMIN_USERNAME:-admin}" \
    --data-urlencode "password=${KC_BOOTSTRAP_ADMIN_PASSWORD:-admin}" \
    "$GW_URL/realms/master/protocol/openid-connect/token" | jq -er .access_token) ||
    die "admin login through $GW_URL failed"
iat=$(curl -fsS -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
    -d '{"expiration":600,"count":2}' "$GW_URL/admin/realms/$REALM/clients-initial-access" |
    jq -er .token) || die "cannot create an initial access token in realm $REALM"

log "python oic $oic_version (python $pyver), through $GW_URL"
(cd "$PYDIR" && GW_URL="$GW_URL" KC_URL="$KC_URL" REALM=$REALM KC_IAT="$iat" "$PY" -B -m unittest -v test_oic)

# ------------------------------------------------------------------ kcreg.sh
cli=$("$SCRIPT_DIR/keycloak.sh" fetch-cli "$VERSION")
java_home=$("$SCRIPT_DIR/keycloak.sh" java-home "$VERSION")
# kcreg.sh with its config file in the state dir; HOME there too, so nothing lands in ~/.keycloak.
kcreg() { # CONFIG ARGS...
    local config=$1
    shift
    JAVA_HOME=$java_home HOME=$STATE "$cli/bin/kcreg.sh" "$@" --config "$STATE/$config"
}
log "kcreg.sh from keycloak-client-cli-dist $VERSION (JAVA_HOME=$java_home), through $GW_URL"

# created CONFIG LABEL OUT — kcreg create succeeded: the client id it printed exists.
created() {
    local config=$1 label=$2 out=$3 id got
    id=$(sed -n "s/^Registered new client with client_id '\(.*\)'$/\1/p" <<<"$out")
    [[ -n $id ]] || die "kcreg create ($label) did not print a client id: $out"
    # kcreg keeps the registration access token in its config: read the client back with it.
    got=$(kcreg "$config" get "$id" --server "$GW_URL" --realm $REALM 2>&1) || die "kcreg get $id failed: $got"
    [[ $(jq -r .clientId <<<"$got") == "$id" ]] || die "kcreg get $id printed: $got"
    log "kcreg registered ($label): client_id=$id"
}

# A service account with create-client: config credentials (client_credentials through the
# gateway), then create.
out=$(kcreg registrar.config config credentials --server "$GW_URL" --realm $REALM \
    --client registrar --secret registrar-secret 2>&1) || die "kcreg config credentials (registrar) failed: $out"
out=$(kcreg registrar.config create -s "clientId=kcreg-sa-$RANDOM$RANDOM" \
    -s 'redirectUris=["https://app.example.com/kcreg/cb"]' 2>&1) || die "kcreg create (registrar) failed: $out"
created registrar.config "service account registrar" "$out"

# An initial access token (-t).
out=$(kcreg iat.config create --server "$GW_URL" --realm $REALM -t "$iat" \
    -s "clientId=kcreg-iat-$RANDOM$RANDOM" -s 'redirectUris=["https://app.example.com/kcreg/cb"]' 2>&1) ||
    die "kcreg create -t (initial access token) failed: $out"
created iat.config "initial access token" "$out"

# norole_create SERVER CONFIG — config credentials as norole at SERVER, then a create that must
# fail; prints kcreg's output (stdout and stderr) and logs each line.
norole_create() {
    local server=$1 config=$2 out rc=0 line label=""
    out=$(kcreg "$config" config credentials --server "$server" --realm $REALM \
        --client norole --secret norole-secret 2>&1) || die "kcreg config credentials (norole at $server) failed: $out"
    out=$(kcreg "$config" create -s "clientId=kcreg-norole-$RANDOM" \
        -s 'redirectUris=["https://app.example.com/kcreg/cb"]' 2>&1) || rc=$?
    ((rc != 0)) || die "kcreg create as norole at $server succeeded (exit 0): $out"
    [[ $server == "$GW_URL" ]] || label=" (straight to Keycloak)"
    while IFS= read -r line; do
        log "kcreg prints$label: $line"
    done <<<"$out"
    log "kcreg create as norole at $server: exit $rc"
    printf '%s\n' "$out"
}

# The forum's case: norole logs in fine, its create is refused, and kcreg shows the fix.
out=$(norole_create "$GW_URL" norole.config)
# The arrows are → in a UTF-8 locale; Java writes another character (or bytes) in others.
grep -q "Assign realm-management/create-client under Clients .\{1,3\} norole .\{1,3\} Service account roles" <<<"$out" ||
    die "kcreg's output does not name the role and where to assign it"
grep -q 'then request a new token. \[insufficient_scope\]$' <<<"$out" ||
    die "kcreg's output does not end with 'request a new token' and the error code"
# Straight to Keycloak, what the forum's user saw.
out=$(norole_create "$KC_URL" norole-direct.config)
grep -qx 'Forbidden \[insufficient_scope\]' <<<"$out" || die "Keycloak's own refusal changed: $out"

log "oic $oic_version and kcreg.sh $VERSION registered through the gateway; the forum's case shows the fix in both (${SECONDS}s)"
