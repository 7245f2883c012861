#!/usr/bin/env bash
# Checks everything in deploy/ with the real tools, and fails when any check fails or cannot run.
#
#   scripts/deploy-check.sh            # all checks (what scripts/test runs)
#   scripts/deploy-check.sh rules      # one part: tools rules manifests image dashboard
#
# 1. rules      promtool check rules + promtool test rules (a unit test per alert)
# 2. manifests  helm lint, helm template, kubeconform -strict against Kubernetes' own schemas
#               (made offline from the k8s.io/kubernetes module's api/openapi-spec and the
#               prometheus-operator module's CRDs), chart == deploy/kubernetes/, consistency,
#               and `dcr-gateway check` of the ConfigMaps' settings and policy
# 3. image      buildah builds deploy/Containerfile FROM scratch with the stripped release binary
#               and the shared libraries ldd names; podman runs it as in the pod (read-only,
#               user 65532, no capabilities) with the ConfigMaps' files; where podman cannot run
#               containers here, the image's root filesystem is run with chroot (said in the output)
# 4. dashboard  Prometheus scrapes the gateway under traffic; every panel query must return data
#
# DCR_IMAGE_RUNNER=chroot skips podman (to check the fallback itself).
#
# Installs what a fresh machine lacks: apt packages (buildah podman prometheus), PyYAML, and helm
# and kubeconform with `go install` at pinned versions, cached under $DCR_CACHE/deploy (default
# ~/.cache/dcr-gateway/deploy), so that a second run builds nothing.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
DCR_PROG=deploy-check
# shellcheck source=scripts/lib.sh
source "$SCRIPT_DIR/lib.sh"

readonly HELM_VERSION=v3.22.0
readonly KUBECONFORM_VERSION=v0.7.0
readonly K8S_VERSION=v1.36.3           # schemas: k8s.io/kubernetes api/openapi-spec/swagger.json
readonly PROM_OPERATOR_VERSION=v0.85.0 # CRDs: ServiceMonitor, PrometheusRule
readonly PYYAML_VERSION=6.0.3

CACHE="$(dcr_cache_dir)/deploy"
STATE=${DCR_DEPLOY_STATE:-$ROOT/.state/deploy}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
IMAGE=localhost/dcr-gateway:check
PY=python3
HELM=
KUBECONFORM=
PODMAN_OPTS=()
PODMAN_RUN_OPTS=()

step() { printf '\n== deploy: %s\n' "$*" >&2; }
timed() { # NAME CMD... — runs CMD, logs how long it took
    local name=$1 t0=$SECONDS
    shift
    "$@"
    log "$name: ${SECONDS}s total, $((SECONDS - t0))s for this step"
}

# --- tools ---------------------------------------------------------------------------------
apt_install() { # PACKAGE... — installs the missing ones
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

go_tool() { # NAME MODULE/PATH VERSION — prints the path of the cached binary, building it once
    local name=$1 pkg=$2 version=$3 dir="$CACHE/bin/$1-$3"
    if [[ ! -x $dir/$name ]]; then
        log "go install $pkg@$version (once; cached in $dir)"
        mkdir -p "$dir"
        (cd "$(mktemp -d)" && GOBIN="$dir" GOFLAGS=-mod=mod go install -trimpath -ldflags="-s -w" "$pkg@$version") >&2 ||
            die "go install $pkg@$version failed"
    fi
    printf '%s\n' "$dir/$name"
}

go_module_dir() { # MODULE VERSION — downloads the module's source, prints its directory
    local dir
    dir=$(cd "$(mktemp -d)" && GOFLAGS=-mod=mod go mod download -json "$1@$2" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') ||
        die "go mod download $1@$2 failed"
    [[ -d $dir ]] || die "go mod download $1@$2 gave no directory"
    printf '%s\n' "$dir"
}

pick_python() {
    local py
    for py in python3 /usr/bin/python3; do
        if command -v "$py" >/dev/null && "$py" -c 'import yaml, tomllib' 2>/dev/null; then
            PY=$py
            return
        fi
    done
    if command -v python3 >/dev/null && python3 -c 'import tomllib' 2>/dev/null &&
        python3 -m pip install -q "PyYAML==$PYYAML_VERSION" >&2 && python3 -c 'import yaml'; then
        PY=python3
        return
    fi
    apt_install python3 python3-yaml
    /usr/bin/python3 -c 'import yaml, tomllib' || die "no Python 3.11+ with PyYAML"
    PY=/usr/bin/python3
}

tools() {
    apt_install buildah podman runc prometheus openssl curl
    require_cmd buildah podman runc prometheus promtool openssl curl cargo
    command -v go >/dev/null || apt_install golang-go
    require_cmd go
    pick_python
    HELM=$(go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION")
    KUBECONFORM=$(go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION")
    log "tools: $("$HELM" version --short 2>/dev/null) ($HELM_VERSION), kubeconform $("$KUBECONFORM" -v), $(promtool --version 2>&1 | head -n1), $(buildah --version), $(podman --version), $("$PY" --version)"
}

# --- 1. alert rules ------------------------------------------------------------------------
rules() {
    promtool check rules "$ROOT/deploy/prometheus/alerts.yaml"
    (cd "$ROOT/deploy/prometheus" && promtool test rules alerts_test.yaml)
}

# --- 2. manifests and chart ----------------------------------------------------------------
kubeconform_strict() { # FILE|DIR...
    "$KUBECONFORM" -strict -summary -output text \
        -schema-location "$STATE/schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json" "$@"
}

manifests() {
    local k8s po
    mkdir -p "$STATE"
    k8s=$(go_module_dir k8s.io/kubernetes "$K8S_VERSION")
    po=$(go_module_dir github.com/prometheus-operator/prometheus-operator "$PROM_OPERATOR_VERSION")
    rm -rf "$STATE/schemas"
    "$PY" "$ROOT/deploy/test/openapi2jsonschema.py" "$STATE/schemas" "$k8s/api/openapi-spec/swagger.json" \
        "$po/jsonnet/prometheus-operator/servicemonitors-crd.json" \
        "$po/jsonnet/prometheus-operator/prometheusrules-crd.json"

    "$HELM" lint --strict "$ROOT/deploy/helm/dcr-gateway"
    "$HELM" template keycloak "$ROOT/deploy/helm/dcr-gateway" >"$STATE/rendered.yaml"
    "$HELM" template sso "$ROOT/deploy/helm/dcr-gateway" --namespace identity \
        --set replicas=3,gateway.maxInFlight=256,gateway.drainDelaySeconds=10,gateway.shutdownGraceSeconds=40 \
        --set-string 'gateway.extraConfig=[jwks]
prefetch = ["demo"]' >"$STATE/rendered-variant.yaml"
    grep -q '>= 256' "$STATE/rendered-variant.yaml" || die "the chart did not carry maxInFlight into the shedding alert"
    grep -q 'terminationGracePeriodSeconds: 65' "$STATE/rendered-variant.yaml" ||
        die "the chart's grace period does not follow drain delay + shutdown grace + Keycloak's stop"

    kubeconform_strict "$ROOT/deploy/kubernetes" "$STATE/rendered.yaml" "$STATE/rendered-variant.yaml"
    # The schemas must refuse what the API server refuses: an unknown field, a wrong type.
    mkdir -p "$STATE/negative"
    sed 's/^\(      terminationGracePeriodSeconds:.*\)$/\1\n      terminationGracePeriod: 40/' \
        "$ROOT/deploy/kubernetes/deployment.yaml" >"$STATE/negative/unknown-field.yaml"
    sed 's/readOnlyRootFilesystem: true/readOnlyRootFilesystem: "yes"/' \
        "$ROOT/deploy/kubernetes/deployment.yaml" >"$STATE/negative/wrong-type.yaml"
    sed 's/      interval: 30s/      intervall: 30s/' \
        "$ROOT/deploy/kubernetes/servicemonitor.yaml" >"$STATE/negative/crd-unknown-field.yaml"
    local f
    for f in "$STATE"/negative/*.yaml; do
        if kubeconform_strict "$f" >/dev/null 2>&1; then
            die "kubeconform accepted $(basename "$f"): the schemas are not strict"
        fi
    done
    log "kubeconform refused the 3 broken manifests"

    "$PY" "$ROOT/deploy/test/manifests_check.py" "$STATE/rendered.yaml" "$STATE/configmaps"
    build_release
    if ! "$TARGET/release/dcr-gateway" check --config "$STATE/configmaps/gateway.toml" \
        --policies "$STATE/configmaps/policies" >"$STATE/check.txt" 2>&1; then
        grep -q 'unknown field `drain_delay`' "$STATE/check.txt" &&
            log "this gateway has no [timeouts] drain_delay, which the manifests' drain relies on (keep accepting with /readyz at 503 after SIGTERM)"
        die "dcr-gateway check refused the ConfigMaps' settings or policy: $(cat "$STATE/check.txt")"
    fi
    log "dcr-gateway check accepts the ConfigMaps' gateway.toml and policy"
}

# --- 3. image ------------------------------------------------------------------------------
build_release() {
    [[ -n ${RELEASE_BUILT:-} ]] && return
    (cd "$ROOT" && cargo build --release --locked --quiet --bin dcr-gateway)
    RELEASE_BUILT=1
}

stage_rootfs() { # DIR — the stripped binary, the libraries it links, CA certificates, user 65532
    local dir=$1 lib
    rm -rf "$dir"
    mkdir -p "$dir/usr/local/bin" "$dir/etc/ssl/certs" "$dir/etc/dcr-gateway/config" "$dir/etc/dcr-gateway/policies" "$dir/tmp"
    strip --strip-all -o "$dir/usr/local/bin/dcr-gateway" "$TARGET/release/dcr-gateway"
    while read -r lib; do
        mkdir -p "$dir$(dirname "$lib")"
        cp -L "$lib" "$dir$lib"
    done < <(ldd "$TARGET/release/dcr-gateway" | grep -o '/[^ ]*' | sort -u)
    cp -L /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
    printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n' >"$dir/etc/passwd"
    printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/etc/group"
    chmod 1777 "$dir/tmp"
}

# podman_works DIR — finds podman options that run a container here (sets PODMAN_OPTS and
# PODMAN_RUN_OPTS): the defaults first; then runc with resource limits within this machine's
# own hard limits (in sandboxes that refuse crun's cgroup setup or raising RLIMIT_NPROC).
podman_works() {
    local nofile
    nofile=$(ulimit -Hn)
    [[ $nofile == unlimited ]] && nofile=1048576
    PODMAN_OPTS=()
    PODMAN_RUN_OPTS=()
    : >"$1/podman-probe.txt"
    if podman run --rm --network host "$IMAGE" --version >>"$1/podman-probe.txt" 2>&1; then
        return 0
    fi
    PODMAN_OPTS=(--runtime runc)
    PODMAN_RUN_OPTS=(--ulimit "nofile=$nofile:$nofile" --ulimit nproc=4096:4096)
    if podman "${PODMAN_OPTS[@]}" run "${PODMAN_RUN_OPTS[@]}" --rm --network host "$IMAGE" --version >>"$1/podman-probe.txt" 2>&1; then
        log "podman with its defaults cannot run containers here ($(head -n 1 "$1/podman-probe.txt")); using ${PODMAN_OPTS[*]} ${PODMAN_RUN_OPTS[*]}"
        return 0
    fi
    return 1
}

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_url() { # URL SECONDS
    local i
    for ((i = 0; i < $2 * 5; i++)); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}

image() {
    local stage="$STATE/image" size libs
    mkdir -p "$STATE"
    build_release
    stage_rootfs "$stage/context/rootfs"
    libs=$(cd "$stage/context/rootfs" && find . -type f -name '*.so*' | sort | tr '\n' ' ')
    size=$(du -sh "$stage/context/rootfs/usr/local/bin/dcr-gateway" | cut -f1)
    log "staged: stripped binary ($size), libraries: $libs"
    buildah rmi -f "$IMAGE" >/dev/null 2>&1 || true # the last run's image
    buildah bud --quiet --layers=false -f "$ROOT/deploy/Containerfile" \
        --build-arg BINARY=context --build-arg RUNTIME_IMAGE=scratch --build-arg CONTEXT_ROOT=rootfs \
        --build-arg REVISION="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)" \
        -t "$IMAGE" "$stage/context" >/dev/null
    local user described old
    # Earlier runs' images and this build's intermediate stage, now untagged.
    for old in $(buildah images --filter label=dcr-gateway.stage -q) \
        $(buildah images --filter dangling=true --filter label=org.opencontainers.image.title=dcr-gateway -q); do
        buildah containers --filter "ancestor=$old" -q | xargs -r buildah rm >/dev/null 2>&1 || true
        buildah rmi "$old" >/dev/null 2>&1 || true
    done
    user=$(buildah inspect --type image --format '{{.OCIv1.Config.User}}' "$IMAGE")
    [[ $user == 65532:65532 ]] || die "image user is '$user', expected 65532:65532"
    described=$(buildah inspect --type image --format 'user {{.OCIv1.Config.User}}, entrypoint {{.OCIv1.Config.Entrypoint}}, cmd {{.OCIv1.Config.Cmd}}, labels {{.OCIv1.Config.Labels}}' "$IMAGE")
    log "built $IMAGE ($(podman image inspect --format '{{.Size}}' "$IMAGE") bytes): $described"

    # The stand-in Keycloak and the ConfigMaps' files, as the pod mounts them.
    mkdir -p "$stage/standin"
    rm -f "$stage/standin/port"
    "$PY" "$ROOT/deploy/test/standin.py" serve "$stage/standin" "https://sso.example.com/realms/demo" &
    STANDIN_PID=$!
    for _ in $(seq 50); do [[ -s $stage/standin/port ]] && break; sleep 0.2; done
    [[ -s $stage/standin/port ]] || die "the stand-in Keycloak did not start"
    [[ -d $STATE/configmaps ]] || die "run the manifests check first (it writes the ConfigMaps' files)"
    local upstream gw_port admin_port how
    upstream="http://127.0.0.1:$(cat "$stage/standin/port")"
    gw_port=$(free_port)
    admin_port=$(free_port)
    if [[ ${DCR_IMAGE_RUNNER:-auto} == chroot ]]; then
        echo "DCR_IMAGE_RUNNER=chroot: podman not tried" >"$stage/podman-probe.txt"
    fi
    if [[ ${DCR_IMAGE_RUNNER:-auto} != chroot ]] && podman_works "$stage"; then
        how=podman
        podman rm -f dcr-gateway-check >/dev/null 2>&1 || true
        podman "${PODMAN_OPTS[@]}" run "${PODMAN_RUN_OPTS[@]}" -d --name dcr-gateway-check --network host --read-only --cap-drop ALL \
            --security-opt no-new-privileges --user 65532:65532 \
            -v "$STATE/configmaps/gateway.toml:/etc/dcr-gateway/config/gateway.toml:ro" \
            -v "$STATE/configmaps/policies:/etc/dcr-gateway/policies:ro" \
            -e DCR_GATEWAY_CONFIG=/etc/dcr-gateway/config/gateway.toml \
            -e DCR_GATEWAY_LISTEN="127.0.0.1:$gw_port" -e DCR_GATEWAY_ADMIN_LISTEN="127.0.0.1:$admin_port" \
            -e DCR_GATEWAY_UPSTREAM="$upstream" "$IMAGE" serve >/dev/null
        log "podman ${PODMAN_OPTS[*]} run ${PODMAN_RUN_OPTS[*]}: container dcr-gateway-check (read-only root, user 65532, no capabilities, host network)"
    else
        how=chroot
        log "podman cannot run the image here: $(tr '\n' ' ' <"$stage/podman-probe.txt")"
        log "falling back to chroot: the image's root filesystem (buildah from + mount) runs the binary as user 65532"
        buildah rm dcr-gateway-check >/dev/null 2>&1 || true
        buildah from --name dcr-gateway-check "$IMAGE" >/dev/null
        ROOTFS=$(buildah mount dcr-gateway-check)
        cp "$STATE/configmaps/gateway.toml" "$ROOTFS/etc/dcr-gateway/config/gateway.toml"
        cp "$STATE/configmaps/policies/"*.toml "$ROOTFS/etc/dcr-gateway/policies/"
        env -i PATH=/usr/local/bin DCR_GATEWAY_CONFIG=/etc/dcr-gateway/config/gateway.toml DCR_GATEWAY_LOG_FORMAT=json \
            DCR_GATEWAY_LISTEN="127.0.0.1:$gw_port" DCR_GATEWAY_ADMIN_LISTEN="127.0.0.1:$admin_port" \
            DCR_GATEWAY_UPSTREAM="$upstream" \
            "$(command -v chroot)" --userspec=65532:65532 "$ROOTFS" /usr/local/bin/dcr-gateway serve 2>"$stage/chroot.log" &
        CHROOT_PID=$!
    fi
    local admin="http://127.0.0.1:$admin_port" gw="http://127.0.0.1:$gw_port" status
    wait_url "$admin/healthz" 30 || { image_logs "$how"; die "no /healthz from the $how-run image"; }
    log "$how: GET /healthz -> $(curl -fsS "$admin/healthz")"
    wait_url "$admin/readyz" 30 || die "/readyz never 200 in the $how-run image: $(curl -sS "$admin/readyz")"
    log "$how: GET /readyz -> $(curl -fsS "$admin/readyz")"
    status=$(curl -sS -o "$stage/create.json" -w '%{http_code}' -H "Authorization: Bearer $(cat "$stage/standin/token")" \
        -H 'Content-Type: application/json' -d '{"client_name":"image-check","redirect_uris":["https://app.example.com/cb"]}' \
        "$gw/realms/demo/clients-registrations/openid-connect")
    [[ $status == 201 ]] || die "an allowed registration through the $how-run image got $status: $(cat "$stage/create.json")"
    status=$(curl -sS -o "$stage/refused.json" -w '%{http_code}' -H "Authorization: Bearer $(cat "$stage/standin/token")" \
        -H 'Content-Type: application/json' -d '{"client_name":"x","redirect_uris":["https://evil.test/cb"]}' \
        "$gw/realms/demo/clients-registrations/openid-connect")
    [[ $status == 400 ]] || die "a refused redirect URI through the $how-run image got $status"
    curl -fsS "$admin/metrics" >"$stage/metrics.txt" || die "no /metrics from the $how-run image"
    grep -q '^dcr_gateway_decisions_total{.*decision="allow"' "$stage/metrics.txt" || die "no allow decision in the $how-run image's metrics"
    grep -q '^dcr_gateway_decisions_total{.*reason="redirect_uri_not_allowed"' "$stage/metrics.txt" || die "no refusal in the $how-run image's metrics"
    log "$how: registration allowed (201) and refused (400, $("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["reason"])' "$stage/refused.json")) through the image; /metrics served"
    stop_image
    [[ $STOP_CODE == 0 ]] || die "the $how-run gateway did not exit 0 on SIGTERM (exit code '$STOP_CODE')"
}

image_logs() { # HOW — the gateway's last log lines from the image
    if [[ $1 == podman ]]; then
        podman logs --tail 20 dcr-gateway-check >&2 || true
    else
        tail -n 20 "$STATE/image/chroot.log" >&2 || true
    fi
}

stop_image() {
    STOP_CODE=
    if podman container exists dcr-gateway-check 2>/dev/null; then
        if podman "${PODMAN_OPTS[@]}" stop -t 40 dcr-gateway-check >/dev/null; then
            STOP_CODE=$(podman inspect --format '{{.State.ExitCode}}' dcr-gateway-check)
            log "podman: container stopped by SIGTERM, exit code $STOP_CODE"
        fi
        podman "${PODMAN_OPTS[@]}" rm -f dcr-gateway-check >/dev/null
    fi
    if [[ -n ${CHROOT_PID:-} ]]; then
        kill -TERM "$CHROOT_PID" 2>/dev/null || true
        STOP_CODE=0
        wait "$CHROOT_PID" || STOP_CODE=$?
        log "chroot: gateway stopped by SIGTERM, exit code $STOP_CODE"
        CHROOT_PID=
    fi
    if [[ -n ${ROOTFS:-} ]]; then
        buildah umount dcr-gateway-check >/dev/null 2>&1 || true
        buildah rm dcr-gateway-check >/dev/null 2>&1 || true
        ROOTFS=
    fi
    if [[ -n ${STANDIN_PID:-} ]]; then
        kill "$STANDIN_PID" 2>/dev/null && wait "$STANDIN_PID" 2>/dev/null || true
        STANDIN_PID=
    fi
}

# --- 4. dashboard --------------------------------------------------------------------------
dashboard() {
    build_release
    "$PY" "$ROOT/deploy/test/dashboard_check.py" "$TARGET/release/dcr-gateway" "$STATE/dashboard"
}

main() {
    local parts=("$@") started=$SECONDS p
    ((${#parts[@]})) || parts=(rules manifests image dashboard)
    trap stop_image EXIT
    step "tools"
    timed tools tools
    for p in "${parts[@]}"; do
        case $p in
            tools) ;;
            rules | manifests | image | dashboard)
                step "$p"
                timed "$p" "$p"
                ;;
            *) die "unknown part '$p' (tools rules manifests image dashboard)" ;;
        esac
    done
    log "deploy checks passed in $((SECONDS - started)) s: ${parts[*]}"
}

main "$@"
