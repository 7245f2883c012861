#!/usr/bin/env bash
# Fetch, run and provision a local Keycloak for dcr-gateway's tests (no Docker).
# Run "scripts/keycloak.sh help" for the interface.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DCR_PROG=keycloak.sh
# shellcheck source=scripts/lib.sh
source "$SCRIPT_DIR/lib.sh"

# Fixed names of what `provision` creates. Tests rely on them.
readonly REALM=demo
readonly IAT_EXPIRATION=3600
readonly IAT_COUNT=50

usage() {
    cat <<'EOF'
Usage: keycloak.sh COMMAND [ARGS...]

Commands:
  fetch VERSION
      Fetch org.keycloak:keycloak-quarkus-dist:VERSION:zip with `mvn dependency:copy`
      and unpack it once into $CACHE/keycloak/keycloak-VERSION.
      Prints that directory on stdout.
  fetch-cli VERSION
      The same for Keycloak's client CLI (kcreg.sh, kcadm.sh):
      org.keycloak:keycloak-client-cli-dist:VERSION:zip into
      $CACHE/keycloak/keycloak-client-tools-VERSION. Prints that directory.
  java-home VERSION
      Prints the JAVA_HOME to run that Keycloak with: Temurin 25 (/usr/lib/jvm/temurin-25*)
      for 26.6 and later, the default Java 17 for older versions.
  start VERSION PORT STATE_DIR
      Copies a fresh server tree into STATE_DIR/keycloak (in-memory H2: every start
      begins with an empty database) and runs
        kc.sh start-dev --http-port=PORT --http-host=127.0.0.1 --db=dev-mem
                        --health-enabled=true --http-management-port=PORT+1000 $KC_EXTRA_OPTS
      in the background (admin/admin in master). Waits until
      GET /realms/master/.well-known/openid-configuration answers 200.
      Writes STATE_DIR/keycloak.{log,pid,version,port}.
  stop STATE_DIR
      SIGTERM, then SIGKILL after $KC_STOP_TIMEOUT s. No error if not running.
  provision BASE_URL OUT_ENV_FILE
      Creates (idempotently) realm "demo", clients registrar/manager/norole and a new
      initial access token, through BASE_URL; writes KC_URL, KC_REALM, KC_IAT,
      KC_REALM_ID and KC_VERSION lines to OUT_ENV_FILE.
  version-of STATE_DIR
      Prints the Keycloak version last started in STATE_DIR.

Environment:
  DCR_CACHE         cache root (default $HOME/.cache/dcr-gateway); Keycloak goes in $DCR_CACHE/keycloak
  KC_EXTRA_OPTS     extra kc.sh options appended on start (split on whitespace)
  KC_START_TIMEOUT  seconds to wait for readiness (default 300)
  KC_STOP_TIMEOUT   seconds to wait after SIGTERM before SIGKILL (default 30)
  DCR_KC_PREBUILT   1 (default): after a first start, keep an augmented copy of the server
                    tree ($CACHE/keycloak/keycloak-VERSION.dev-built) and start from it
                    next time (~20 s faster); 0: always copy the pristine distribution
  KC_BOOTSTRAP_ADMIN_USERNAME / KC_BOOTSTRAP_ADMIN_PASSWORD   admin user (default admin / admin)
EOF
}

admin_user() { printf '%s\n' "${KC_BOOTSTRAP_ADMIN_USERNAME:-admin}"; }
admin_password() { printf '%s\n' "${KC_BOOTSTRAP_ADMIN_PASSWORD:-admin}"; }

check_version() {
    [[ $1 =~ ^[0-9]+\.[0-9]+\.[0-9]+([.-][A-Za-z0-9.-]+)?$ ]] ||
        die "invalid Keycloak version '$1' (expected e.g. 26.7.3)"
}

check_port() {
    if ! is_uint "$1" || (($1 < 1 || $1 > 64535)); then
        die "invalid port '$1' (expected 1..64535; PORT+1000 is used for management)"
    fi
}

# now_us — wall clock in microseconds.
now_us() {
    local t=${EPOCHREALTIME/[.,]/}
    printf '%s\n' "$t"
}

# secs_since START_US — elapsed seconds with one decimal.
secs_since() {
    local d=$(($(now_us) - $1))
    printf '%d.%d\n' $((d / 1000000)) $((d % 1000000 / 100000))
}

# proc_alive PID — running and not a zombie.
proc_alive() {
    local state
    kill -0 "$1" 2>/dev/null || return 1
    state=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ $state != Z ]]
}

# --------------------------------------------------------------------------- fetch

cmd_fetch() {
    (($# == 1)) || die "usage: keycloak.sh fetch VERSION"
    check_version "$1"
    fetch_dist keycloak-quarkus-dist "$1" "keycloak-$1" "keycloak-$1" bin/kc.sh "Keycloak $1"
}

cmd_fetch_cli() {
    (($# == 1)) || die "usage: keycloak.sh fetch-cli VERSION"
    check_version "$1"
    fetch_dist keycloak-client-cli-dist "$1" keycloak-client-tools "keycloak-client-tools-$1" \
        bin/kcreg.sh "Keycloak's client CLI $1"
}

# fetch_dist ARTIFACT VERSION ZIP_TOP INSTALL_NAME MARKER WHAT — fetch
# org.keycloak:ARTIFACT:VERSION:zip with mvn, unpack its top directory ZIP_TOP once into
# $CACHE/keycloak/INSTALL_NAME (MARKER: an executable inside that proves it); print that directory.
fetch_dist() {
    local artifact=$1 version=$2 ztop=$3 name=$4 marker=$5 what=$6 cache install zip tmp top
    cache="$(dcr_cache_dir)/keycloak"
    install="$cache/$name"
    if [[ -x $install/$marker ]]; then
        printf '%s\n' "$install"
        return 0
    fi
    require_cmd mvn unzip
    mkdir -p "$cache"
    zip="$cache/$artifact-$version.zip"
    if [[ ! -s $zip ]]; then
        log "fetching org.keycloak:$artifact:$version:zip with mvn"
        local mvnlog
        mvnlog=$(mktemp "$cache/.mvn-$version.XXXXXX")
        # Run from the cache dir so that no project pom.xml gets in the way. Even with
        # -q, mvn prints colour codes: keep its output and show it only on failure.
        if ! (cd "$cache" && mvn -q -B dependency:copy \
            "-Dartifact=org.keycloak:$artifact:$version:zip" \
            "-DoutputDirectory=$cache") >"$mvnlog" 2>&1; then
            sed 's/\x1b\[[0-9;]*m//g' "$mvnlog" | grep -v '^\[ERROR\] *$' | head -n 3 >&2
            rm -f -- "$mvnlog"
            die "mvn dependency:copy of org.keycloak:$artifact:$version:zip failed (is that version published?)"
        fi
        rm -f -- "$mvnlog"
        [[ -s $zip ]] || die "mvn succeeded but $zip is missing"
    fi
    tmp=$(mktemp -d "$cache/.unzip-$version.XXXXXX")
    if ! unzip -q "$zip" -d "$tmp"; then
        rm -rf -- "$tmp"
        die "cannot unzip $zip (corrupt download? delete it and retry)"
    fi
    top="$tmp/$ztop"
    if [[ ! -x $top/$marker ]]; then
        rm -rf -- "$tmp"
        die "$zip does not contain $ztop/$marker"
    fi
    # Atomic publish; if another run won the race, keep its copy.
    if ! mv -T "$top" "$install" 2>/dev/null; then
        [[ -x $install/$marker ]] || { rm -rf -- "$tmp"; die "cannot move unpacked tree to $install"; }
    fi
    rm -rf -- "$tmp" "$zip" # the zip stays in the local Maven repository
    log "unpacked $what into $install"
    printf '%s\n' "$install"
}

# --------------------------------------------------------------------------- java-home

cmd_java_home() {
    (($# == 1)) || die "usage: keycloak.sh java-home VERSION"
    local version=$1 major minor jh java
    check_version "$version"
    IFS=. read -r major minor _ <<<"$version"
    if ((10#$major > 26 || (10#$major == 26 && 10#$minor >= 6))); then
        for jh in /usr/lib/jvm/temurin-25*; do
            if [[ -x $jh/bin/java ]]; then
                printf '%s\n' "$jh"
                return 0
            fi
        done
        die "Keycloak $version needs Java 25 here, but no JDK matches /usr/lib/jvm/temurin-25*"
    fi
    jh=/usr/lib/jvm/java-17-openjdk-amd64
    if [[ ! -x $jh/bin/java ]]; then
        java=$(command -v java) || die "Keycloak $version needs Java 17: neither $jh nor 'java' on PATH"
        java=$(readlink -f "$java")
        jh=${java%/bin/java}
        [[ -x $jh/bin/java ]] || die "cannot derive JAVA_HOME from $java"
    fi
    if ! "$jh/bin/java" -version 2>&1 | grep -q 'version "17[."]'; then
        log "warning: $jh is not Java 17; Keycloak $version may not run on it"
    fi
    printf '%s\n' "$jh"
}

# --------------------------------------------------------------------------- start / stop

tail_log() {
    local logf=$1
    if [[ -f $logf ]]; then
        printf '%s: ---- last 40 lines of %s ----\n' "$DCR_PROG" "$logf" >&2
        tail -n 40 "$logf" >&2
        printf '%s: ---- end of log ----\n' "$DCR_PROG" >&2
    fi
}

# is_our_keycloak PID STATE_DIR — PID's command line mentions the server tree in STATE_DIR.
is_our_keycloak() {
    local cmdline
    cmdline=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *"$2/keycloak/"* ]]
}

cmd_start() {
    (($# == 3)) || die "usage: keycloak.sh start VERSION PORT STATE_DIR"
    local version=$1 port=$2 state=$3
    check_version "$version"
    check_port "$port"
    require_cmd curl setsid
    local mport=$((port + 1000))
    local timeout=${KC_START_TIMEOUT:-300}
    is_uint "$timeout" || die "KC_START_TIMEOUT must be a number of seconds, got '$timeout'"

    mkdir -p "$state" || die "cannot create state dir $state"
    state=$(cd "$state" && pwd -P)
    local pidf="$state/keycloak.pid" logf="$state/keycloak.log" old
    if [[ -f $pidf ]]; then
        old=$(<"$pidf")
        if is_uint "$old" && proc_alive "$old" && is_our_keycloak "$old" "$state"; then
            die "a Keycloak from $state is already running (pid $old); run 'keycloak.sh stop $state' first"
        fi
        rm -f -- "$pidf"
    fi
    port_in_use "$port" && die "port $port on 127.0.0.1 is already in use"
    port_in_use "$mport" && die "management port $mport (PORT+1000) on 127.0.0.1 is already in use"

    local install java_home
    install=$(cmd_fetch "$version")
    java_home=$(cmd_java_home "$version")

    # start-dev spends ~half its start-up re-augmenting a pristine dist (Quarkus build
    # step). A tree that already ran start-dev skips it as long as the build options
    # match (Keycloak re-augments by itself when they differ), so after the first
    # successful start a copy is kept (without data/) and later starts copy that.
    local prebuilt="$install.dev-built" src=$install t0
    if [[ ${DCR_KC_PREBUILT:-1} != 0 && -x $prebuilt/bin/kc.sh ]]; then
        src=$prebuilt
    fi
    t0=$(now_us)
    rm -rf -- "${state:?}/keycloak"
    cp -a "$src" "$state/keycloak" || die "cannot copy $src to $state/keycloak"
    log "fresh server tree from $src in $state/keycloak ($(secs_since "$t0")s)"

    local -a extra=() clean_env=()
    read -r -a extra <<<"${KC_EXTRA_OPTS:-}"
    # Keycloak reads every KC_* variable as configuration: start from none of the
    # caller's (ours included: KC_EXTRA_OPTS, KC_URL, ...), so only the command
    # line below configures it. kc.sh also reads DEBUG* and JAVA.
    local v
    while IFS= read -r v; do
        clean_env+=(-u "$v")
    done < <(compgen -e | grep -E '^(KC_|KEYCLOAK_ADMIN|DEBUG$|DEBUG_PORT$|DEBUG_SUSPEND$|JAVA$)' || true)

    local url="http://127.0.0.1:$port"
    printf '%s\n' "$version" >"$state/keycloak.version"
    printf '%s\n' "$port" >"$state/keycloak.port"
    : >"$logf"
    t0=$(now_us)
    # setsid: own session and process group, so `stop` can signal kc.sh and java together
    # and a Ctrl-C aimed at the caller does not reach it.
    (
        cd "$state/keycloak"
        exec setsid env "${clean_env[@]}" \
            JAVA_HOME="$java_home" \
            KC_BOOTSTRAP_ADMIN_USERNAME="$(admin_user)" \
            KC_BOOTSTRAP_ADMIN_PASSWORD="$(admin_password)" \
            "$state/keycloak/bin/kc.sh" start-dev \
            "--http-port=$port" --http-host=127.0.0.1 \
            --db=dev-mem --health-enabled=true \
            "--http-management-port=$mport" \
            "${extra[@]}" \
            </dev/null >>"$logf" 2>&1
    ) &
    local pid=$!
    printf '%s\n' "$pid" >"$pidf"
    log "starting Keycloak $version (pid $pid, JAVA_HOME=$java_home, log $logf)"

    local deadline=$((SECONDS + timeout)) code
    while :; do
        if ! proc_alive "$pid"; then
            local rc=0
            wait "$pid" || rc=$?
            rm -f -- "$pidf"
            tail_log "$logf"
            die "Keycloak $version exited early (status $rc) before answering on $url"
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
            "$url/realms/master/.well-known/openid-configuration" 2>/dev/null) || true
        [[ $code == 200 ]] && break
        if ((SECONDS >= deadline)); then
            tail_log "$logf"
            log "stopping the unready Keycloak"
            cmd_stop "$state" >/dev/null 2>&1 || true
            die "Keycloak $version not ready on $url within ${timeout}s (last status '${code:-none}')"
        fi
        sleep 1
    done
    printf 'keycloak %s ready on %s in %ss\n' "$version" "$url" "$(secs_since "$t0")" >&2
    if [[ ${DCR_KC_PREBUILT:-1} != 0 && $src == "$install" ]]; then
        save_prebuilt "$state/keycloak" "$prebuilt"
    fi
}

# save_prebuilt TREE DEST — keep an augmented server tree (minus data/) for later starts.
save_prebuilt() {
    local tree=$1 dest=$2 tmp
    [[ -e $dest ]] && return 0
    tmp=$(mktemp -d "$(dirname -- "$dest")/.dev-built.XXXXXX") || return 0
    if cp -a "$tree/." "$tmp/" && rm -rf -- "$tmp/data" && mv -T "$tmp" "$dest" 2>/dev/null; then
        log "kept the augmented tree as $dest for faster starts (DCR_KC_PREBUILT=0 to disable)"
    else
        rm -rf -- "$tmp"
    fi
}

# group_alive PGID — some process of that process group still exists.
group_alive() {
    kill -0 -- "-$1" 2>/dev/null
}

cmd_stop() {
    (($# == 1)) || die "usage: keycloak.sh stop STATE_DIR"
    local state=$1 pidf pid timeout=${KC_STOP_TIMEOUT:-30}
    is_uint "$timeout" || die "KC_STOP_TIMEOUT must be a number of seconds, got '$timeout'"
    if [[ ! -d $state ]]; then
        log "no state dir $state: nothing to stop"
        return 0
    fi
    state=$(cd "$state" && pwd -P)
    pidf="$state/keycloak.pid"
    if [[ ! -f $pidf ]]; then
        log "no $pidf: Keycloak not running"
        return 0
    fi
    pid=$(<"$pidf")
    if ! is_uint "$pid" || ! proc_alive "$pid"; then
        log "Keycloak (pid ${pid:-?}) not running"
        rm -f -- "$pidf"
        return 0
    fi
    if ! is_our_keycloak "$pid" "$state"; then
        log "pid $pid is not the Keycloak of $state (stale pid file); not signalling it"
        rm -f -- "$pidf"
        return 0
    fi
    # pid leads its own process group (setsid in start): signal kc.sh and java together.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + timeout))
    while group_alive "$pid" && ((SECONDS < deadline)); do
        sleep 0.5
    done
    if group_alive "$pid"; then
        log "Keycloak (pid $pid) still running after ${timeout}s: SIGKILL"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f -- "$pidf"
    log "stopped Keycloak (pid $pid)"
}

cmd_version_of() {
    (($# == 1)) || die "usage: keycloak.sh version-of STATE_DIR"
    local f="$1/keycloak.version"
    [[ -s $f ]] || die "no Keycloak was started in $1 (missing $f)"
    cat -- "$f"
}

# --------------------------------------------------------------------------- provision

BASE=""
TMPD=""
ADMIN_TOKEN=""
ADMIN_TOKEN_AT=-1000
API_STATUS=""
API_BODY=""

admin_token() {
    # master's admin-cli tokens live 60 s: take a new one every 30 s.
    if ((SECONDS - ADMIN_TOKEN_AT < 30)) && [[ -n $ADMIN_TOKEN ]]; then
        return 0
    fi
    local code
    code=$(curl -sS -o "$TMPD/token" -w '%{http_code}' --max-time 30 \
        --data-urlencode grant_type=password \
        --data-urlencode client_id=admin-cli \
        --data-urlencode "username=$(admin_user)" \
        --data-urlencode "password=$(admin_password)" \
        "$BASE/realms/master/protocol/openid-connect/token") ||
        die "cannot reach Keycloak at $BASE (is it running?)"
    [[ $code == 200 ]] ||
        die "admin login (admin-cli password grant on master) failed: HTTP $code $(head -c 500 "$TMPD/token")"
    ADMIN_TOKEN=$(jq -er .access_token "$TMPD/token") || die "no access_token in admin login response"
    ADMIN_TOKEN_AT=$SECONDS
}

# api METHOD PATH [JSON] — admin REST call; sets API_STATUS and API_BODY.
api() {
    local method=$1 path=$2 data=${3-}
    admin_token
    local -a args=(-sS -X "$method" -o "$TMPD/body" -w '%{http_code}' --max-time 60
        -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Accept: application/json')
    if [[ -n $data ]]; then
        args+=(-H 'Content-Type: application/json' --data-binary "$data")
    fi
    API_STATUS=$(curl "${args[@]}" "$BASE$path") || die "curl $method $BASE$path failed"
    API_BODY=$(cat "$TMPD/body")
}

# expect CONTEXT STATUS... — die unless API_STATUS is one of them.
expect() {
    local what=$1 s
    shift
    for s in "$@"; do
        [[ $API_STATUS == "$s" ]] && return 0
    done
    die "$what: HTTP $API_STATUS (expected $*): ${API_BODY:0:500}"
}

ensure_realm() {
    api GET "/admin/realms/$REALM"
    case $API_STATUS in
    200)
        if [[ $(jq -r .enabled <<<"$API_BODY") != true ]]; then
            api PUT "/admin/realms/$REALM" '{"enabled":true}'
            expect "enable realm $REALM" 204
        fi
        ;;
    404)
        api POST /admin/realms "$(jq -nc --arg r "$REALM" '{realm:$r, enabled:true}')"
        expect "create realm $REALM" 201 409
        log "created realm $REALM"
        ;;
    *) expect "read realm $REALM" 200 404 ;;
    esac
}

# client_uuid CLIENT_ID — internal id of the client, or empty.
client_uuid() {
    api GET "/admin/realms/$REALM/clients?clientId=$1"
    expect "look up client $1" 200
    jq -r --arg c "$1" '[.[] | select(.clientId == $c)][0].id // empty' <<<"$API_BODY"
}

# ensure_client CLIENT_ID SECRET — confidential service-account-only client; prints its uuid.
ensure_client() {
    local cid=$1 secret=$2 rep id
    rep=$(jq -nc --arg c "$cid" --arg s "$secret" '{
        clientId: $c, enabled: true, protocol: "openid-connect",
        publicClient: false, bearerOnly: false,
        clientAuthenticatorType: "client-secret", secret: $s,
        serviceAccountsEnabled: true, standardFlowEnabled: false,
        implicitFlowEnabled: false, directAccessGrantsEnabled: false }')
    id=$(client_uuid "$cid")
    if [[ -z $id ]]; then
        api POST "/admin/realms/$REALM/clients" "$rep"
        expect "create client $cid" 201 409
        id=$(client_uuid "$cid")
        [[ -n $id ]] || die "client $cid was created but cannot be found"
        log "created client $cid"
    else
        api PUT "/admin/realms/$REALM/clients/$id" "$rep"
        expect "update client $cid" 204
    fi
    printf '%s\n' "$id"
}

# set_realm_management_roles CLIENT_UUID CLIENT_ID ROLE... — the client's service account
# gets exactly these realm-management client roles (others are removed).
set_realm_management_roles() {
    local cuuid=$1 cid=$2
    shift 2
    local sa rm current want remove add
    api GET "/admin/realms/$REALM/clients/$cuuid/service-account-user"
    expect "service account of $cid" 200
    sa=$(jq -er .id <<<"$API_BODY") || die "no service account user for $cid"
    rm=$(client_uuid realm-management)
    [[ -n $rm ]] || die "realm $REALM has no realm-management client"

    api GET "/admin/realms/$REALM/users/$sa/role-mappings/clients/$rm"
    expect "realm-management roles of $cid" 200
    current=$API_BODY
    want=$(printf '%s\n' "$@" | jq -Rnc '[inputs | select(length > 0)]')

    remove=$(jq -c --argjson w "$want" '[.[] | select(.name as $n | $w | index($n) | not)]' <<<"$current")
    if [[ $remove != '[]' ]]; then
        api DELETE "/admin/realms/$REALM/users/$sa/role-mappings/clients/$rm" "$remove"
        expect "remove realm-management roles from $cid" 204
        log "removed realm-management roles $(jq -c 'map(.name)' <<<"$remove") from $cid"
    fi
    local role
    for role in "$@"; do
        if jq -e --arg r "$role" 'any(.[]; .name == $r)' <<<"$current" >/dev/null; then
            continue
        fi
        api GET "/admin/realms/$REALM/clients/$rm/roles/$role"
        expect "read realm-management role $role" 200
        add=$(jq -c '[{id, name}]' <<<"$API_BODY")
        api POST "/admin/realms/$REALM/users/$sa/role-mappings/clients/$rm" "$add"
        expect "grant $role to $cid" 204
        log "granted realm-management $role to $cid"
    done
}

# check_env_value NAME VALUE — safe both to source and to read as plain KEY=VALUE.
check_env_value() {
    [[ $2 =~ ^[A-Za-z0-9._:/@+=-]+$ ]] || die "refusing to write odd value for $1: '$2'"
}

cmd_provision() {
    (($# == 2)) || die "usage: keycloak.sh provision BASE_URL OUT_ENV_FILE"
    require_cmd curl jq
    BASE=${1%/}
    local out=$2
    [[ $BASE =~ ^https?://[^/]+(/.*)?$ ]] || die "BASE_URL must look like http://HOST:PORT, got '$1'"
    TMPD=$(mktemp -d)
    # shellcheck disable=SC2064 # expand now: TMPD is global and fixed from here on
    trap "rm -rf -- '$TMPD'" EXIT

    ensure_realm
    local id
    id=$(ensure_client registrar registrar-secret)
    set_realm_management_roles "$id" registrar create-client
    id=$(ensure_client manager manager-secret)
    set_realm_management_roles "$id" manager manage-clients
    id=$(ensure_client norole norole-secret)
    set_realm_management_roles "$id" norole

    local realm_id version iat
    api GET "/admin/realms/$REALM"
    expect "read realm $REALM" 200
    realm_id=$(jq -er .id <<<"$API_BODY") || die "realm $REALM has no id"
    api GET /admin/serverinfo
    expect "read server info" 200
    version=$(jq -er .systemInfo.version <<<"$API_BODY") || die "no .systemInfo.version in server info"

    # An IAT's token is only shown when it is created, so each run makes a new one.
    api POST "/admin/realms/$REALM/clients-initial-access" \
        "$(jq -nc --argjson e "$IAT_EXPIRATION" --argjson c "$IAT_COUNT" '{expiration:$e, count:$c}')"
    expect "create initial access token" 200 201
    iat=$(jq -er .token <<<"$API_BODY") || die "no token in initial access token response"

    check_env_value KC_URL "$BASE"
    check_env_value KC_IAT "$iat"
    check_env_value KC_REALM_ID "$realm_id"
    check_env_value KC_VERSION "$version"

    local dir tmpf
    dir=$(dirname -- "$out")
    mkdir -p -- "$dir" || die "cannot create directory $dir"
    tmpf=$(mktemp "$dir/.env.XXXXXX")
    {
        printf 'KC_URL=%s\n' "$BASE"
        printf 'KC_REALM=%s\n' "$REALM"
        printf 'KC_IAT=%s\n' "$iat"
        printf 'KC_REALM_ID=%s\n' "$realm_id"
        printf 'KC_VERSION=%s\n' "$version"
    } >"$tmpf"
    mv -f -- "$tmpf" "$out" || die "cannot write $out"
    log "provisioned realm $REALM on $BASE (Keycloak $version); wrote $out"
}

# --------------------------------------------------------------------------- main

main() {
    (($# >= 1)) || {
        usage >&2
        exit 2
    }
    local cmd=$1
    shift
    case $cmd in
    fetch) cmd_fetch "$@" ;;
    fetch-cli) cmd_fetch_cli "$@" ;;
    java-home) cmd_java_home "$@" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    provision) cmd_provision "$@" ;;
    version-of) cmd_version_of "$@" ;;
    help | -h | --help) usage ;;
    *) die "unknown command '$cmd' (see 'keycloak.sh help')" ;;
    esac
}

main "$@"
