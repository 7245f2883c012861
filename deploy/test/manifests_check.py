#!/usr/bin/env python3
"""Checks that the Helm chart renders what deploy/kubernetes/ holds, and that the manifests
hang together (what kubeconform's schemas cannot see).

    manifests_check.py RENDERED_YAML OUT_DIR

RENDERED_YAML is `helm template keycloak deploy/helm/dcr-gateway` with the default values.
Writes the gateway's settings and policy files from the ConfigMaps into OUT_DIR/gateway.toml
and OUT_DIR/policies/, for `dcr-gateway check`. Needs PyYAML.
"""

import copy
import os
import re
import sys
import tomllib

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STATIC = os.path.join(ROOT, "deploy", "kubernetes")
ALERTS = os.path.join(ROOT, "deploy", "prometheus", "alerts.yaml")
CHART_ALERTS = os.path.join(ROOT, "deploy", "helm", "dcr-gateway", "files", "alerts.yaml")
HELM_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")

problems = []


def check(cond, msg):
    if not cond:
        problems.append(msg)
    return cond


def load_docs(paths):
    objs = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    key = (doc["kind"], doc["metadata"]["name"])
                    check(key not in objs, f"{key} defined twice")
                    objs[key] = doc
    return objs


def normalise(obj):
    """Drops what only Helm adds: its bookkeeping labels and the config checksum annotation."""
    obj = copy.deepcopy(obj)

    def clean(meta):
        for label in HELM_LABELS:
            meta.get("labels", {}).pop(label, None)
        ann = meta.get("annotations", {})
        for k in [k for k in ann if k.startswith("checksum/")]:
            del ann[k]
        if "annotations" in meta and not meta["annotations"]:
            del meta["annotations"]

    clean(obj["metadata"])
    tmpl = obj.get("spec", {}).get("template", {}).get("metadata")
    if tmpl is not None:
        clean(tmpl)
    return obj


def diff(a, b, path=""):
    """The first few paths where a and b differ."""
    if type(a) is not type(b):
        return [f"{path}: {a!r} != {b!r}"]
    if isinstance(a, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: only in {'static' if k in a else 'chart'}")
            else:
                out += diff(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", text)
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    n, unit = int(m.group(1)), m.group(2)
    return {"ms": n / 1000, "s": n, "m": n * 60, "h": n * 3600}[unit]


def consistency(objs):
    deploy = objs[("Deployment", "keycloak")]
    pod = deploy["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    kc, gw = containers["keycloak"], containers["dcr-gateway"]
    kc_env = {e["name"]: e.get("value") for e in kc["env"]}
    gw_env = {e["name"]: e.get("value") for e in gw["env"]}
    settings = tomllib.loads(objs[("ConfigMap", "keycloak-gateway")]["data"]["gateway.toml"])
    timeouts = settings.get("timeouts", {})

    # Keycloak trusts the gateway's forwarded headers, from the gateway alone, and is reached
    # only through it.
    check(kc_env.get("KC_PROXY_HEADERS") == "xforwarded", "KC_PROXY_HEADERS must be xforwarded")
    check(kc_env.get("KC_PROXY_TRUSTED_ADDRESSES") == "127.0.0.1", "KC_PROXY_TRUSTED_ADDRESSES must be 127.0.0.1")
    check(kc_env.get("KC_HTTP_HOST") == "127.0.0.1", "Keycloak's HTTP port must listen on 127.0.0.1 only")
    check(
        settings.get("upstream") == f"http://127.0.0.1:{kc_env.get('KC_HTTP_PORT')}",
        f"gateway upstream {settings.get('upstream')} is not Keycloak's port {kc_env.get('KC_HTTP_PORT')}",
    )
    check(
        kc_env.get("KC_HOSTNAME") == settings.get("public_url"),
        f"KC_HOSTNAME {kc_env.get('KC_HOSTNAME')} != public_url {settings.get('public_url')} (token issuers)",
    )
    check(not any(p.get("containerPort") == 8080 for p in kc.get("ports", [])), "Keycloak's 8080 must not be a pod port")

    # Listening in the pod: proxy on every interface, admin on the pod IP.
    listen = settings.get("listen", "")
    port = int(listen.rsplit(":", 1)[1])
    check(listen in (f":{port}", f"0.0.0.0:{port}"), f"gateway listen {listen!r} is not reachable from the Service")
    gw_ports = {p["name"]: p["containerPort"] for p in gw["ports"]}
    check(gw_ports.get("http") == port, f"container port http {gw_ports.get('http')} != listen port {port}")
    admin = gw_env.get("DCR_GATEWAY_ADMIN_LISTEN", "")
    check(admin == f"$(POD_IP):{gw_ports.get('admin')}", f"admin listener {admin!r} is not $(POD_IP):<admin port>")
    check(gw_env and list(gw_env).index("POD_IP") < list(gw_env).index("DCR_GATEWAY_ADMIN_LISTEN"), "POD_IP must come before its use")
    check(gw["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}, "gateway readiness must be GET /readyz on admin")
    check(gw["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}, "gateway liveness must be GET /healthz on admin")
    svc = objs[("Service", "keycloak")]
    check(svc["spec"]["ports"][0]["targetPort"] == "http", "the Service must target the gateway's port")

    # Drain: the gateway keeps accepting for drain_delay, then drains for shutdown_grace;
    # Keycloak must outlive both; the pod's grace period must cover Keycloak's own stop too.
    drain = seconds(timeouts.get("drain_delay", "5s"))
    grace = seconds(timeouts.get("shutdown_grace", "30s"))
    pre = kc["lifecycle"]["preStop"]["sleep"]["seconds"]
    kc_stop = seconds(kc_env.get("KC_SHUTDOWN_DELAY", "1s")) + seconds(kc_env.get("KC_SHUTDOWN_TIMEOUT", "10s"))
    tgps = pod["terminationGracePeriodSeconds"]
    check(pre >= drain + grace, f"Keycloak preStop {pre}s < drain_delay {drain}s + shutdown_grace {grace}s")
    check(tgps >= pre + kc_stop, f"terminationGracePeriodSeconds {tgps} < preStop {pre} + Keycloak stop {kc_stop}")
    check("lifecycle" not in gw, "the gateway drains itself (drain_delay); it needs no preStop")

    # Security: non-root, read-only root, no capabilities, resources, for the gateway; non-root
    # and no capabilities for Keycloak.
    check(pod["securityContext"].get("runAsNonRoot") is True, "pod securityContext.runAsNonRoot must be true")
    check(pod.get("automountServiceAccountToken") is False, "no service account token is needed")
    for c in (kc, gw):
        sc = c.get("securityContext", {})
        check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{c['name']}: capabilities must drop ALL")
        check(sc.get("allowPrivilegeEscalation") is False, f"{c['name']}: allowPrivilegeEscalation must be false")
        check(sc.get("runAsUser", 0) != 0, f"{c['name']}: runAsUser must not be 0")
        check(c.get("resources", {}).get("requests") and c["resources"].get("limits"), f"{c['name']}: resources")
    check(gw["securityContext"].get("readOnlyRootFilesystem") is True, "gateway: readOnlyRootFilesystem must be true")
    mounts = {m["name"]: m for m in gw["volumeMounts"]}
    check("subPath" not in mounts["gateway-policies"], "the policy mount must not use subPath (no updates)")
    check(
        settings.get("policies") == mounts["gateway-policies"]["mountPath"],
        f"policies {settings.get('policies')} is not the mount {mounts['gateway-policies']['mountPath']}",
    )
    check(
        gw_env.get("DCR_GATEWAY_CONFIG") == mounts["gateway-config"]["mountPath"] + "/gateway.toml",
        "DCR_GATEWAY_CONFIG is not the mounted gateway.toml",
    )

    # Monitoring: the ServiceMonitor selects the admin Service by its labels and port.
    sm = objs[("ServiceMonitor", "keycloak-gateway")]
    admin_svc = objs[("Service", "keycloak-gateway-admin")]
    sel = sm["spec"]["selector"]["matchLabels"]
    check(all(admin_svc["metadata"]["labels"].get(k) == v for k, v in sel.items()), "ServiceMonitor does not select the admin Service")
    check(not all(svc["metadata"]["labels"].get(k) == v for k, v in sel.items()), "ServiceMonitor must not select the main Service")
    check(sm["spec"]["endpoints"][0]["port"] == admin_svc["spec"]["ports"][0]["name"], "ServiceMonitor port is not the admin port")
    with open(ALERTS, encoding="utf-8") as f:
        alerts = yaml.safe_load(f)
    rule = objs[("PrometheusRule", "keycloak-gateway")]
    check(rule["spec"] == alerts, "PrometheusRule spec differs from deploy/prometheus/alerts.yaml")
    with open(ALERTS, "rb") as a, open(CHART_ALERTS, "rb") as b:
        check(a.read() == b.read(), "deploy/helm/dcr-gateway/files/alerts.yaml is not a copy of deploy/prometheus/alerts.yaml")
    shed = [r for g in alerts["groups"] for r in g["rules"] if r["alert"] == "DcrGatewayShedding"]
    check(
        shed and f">= {settings.get('max_in_flight')}" in shed[0]["expr"],
        f"DcrGatewayShedding's threshold is not max_in_flight {settings.get('max_in_flight')}",
    )
    pdb = objs[("PodDisruptionBudget", "keycloak")]
    check(deploy["spec"]["replicas"] > 1 and pdb["spec"].get("maxUnavailable") == 1, "2+ replicas, at most 1 disrupted")
    netpol = objs[("NetworkPolicy", "keycloak")]
    admin_rules = [r for r in netpol["spec"]["ingress"] if any(p.get("port") == "admin" for p in r.get("ports", []))]
    check(admin_rules and all(r.get("from") for r in admin_rules), "the NetworkPolicy must limit who reaches the admin port")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rendered_path, out = sys.argv[1], sys.argv[2]
    static = load_docs(sorted(os.path.join(STATIC, f) for f in os.listdir(STATIC) if f.endswith(".yaml")))
    chart = load_docs([rendered_path])
    check(set(static) == set(chart), f"objects differ: static only {sorted(set(static) - set(chart))}, chart only {sorted(set(chart) - set(static))}")
    for key in sorted(set(static) & set(chart)):
        d = diff(normalise(static[key]), normalise(chart[key]))
        check(not d, f"{key[0]}/{key[1]}: chart differs from deploy/kubernetes: " + "; ".join(d[:5]))
    for key, obj in chart.items():
        labels = obj["metadata"].get("labels", {})
        check(labels.get("app.kubernetes.io/managed-by") == "Helm", f"{key}: chart object without Helm labels")
    consistency(static)
    os.makedirs(os.path.join(out, "policies"), exist_ok=True)
    with open(os.path.join(out, "gateway.toml"), "w", encoding="utf-8") as f:
        f.write(static[("ConfigMap", "keycloak-gateway")]["data"]["gateway.toml"])
    for name, body in static[("ConfigMap", "keycloak-gateway-policies")]["data"].items():
        with open(os.path.join(out, "policies", name), "w", encoding="utf-8") as f:
            f.write(body)
    if problems:
        for p in problems:
            print(f"manifests-check: problem: {p}", file=sys.stderr)
        sys.exit(1)
    print(f"manifests-check: {len(static)} objects: the chart renders deploy/kubernetes/, and the manifests hang together")


if __name__ == "__main__":
    main()
