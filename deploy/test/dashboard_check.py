#!/usr/bin/env python3
"""The Grafana dashboard against a real Prometheus scraping a real gateway under traffic.

    dashboard_check.py GATEWAY_BIN STATE_DIR

Starts a stand-in Keycloak (standin.py), the gateway binary in front of it (port 0), and
Prometheus (from PATH) scraping the gateway's admin port every second; sends traffic that
exercises every panel (allowed, refused and quota-limited creates, Keycloak refusals, upstream
timeouts and dropped connections, shed requests, a failed and a good policy reload, a JWKS
fetch that fails once); then evaluates every panel query of deploy/grafana/dcr-gateway.json
through Prometheus's HTTP API. Fails unless each query parses and returns data, and unless
every metric the dashboard and deploy/prometheus/alerts.yaml name is defined in src/metrics.rs.
"""

import concurrent.futures
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import standin  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "dcr-gateway.json")
ALERTS = os.path.join(ROOT, "deploy", "prometheus", "alerts.yaml")
METRICS_RS = os.path.join(ROOT, "src", "metrics.rs")
PROCESS_RS = os.path.join(ROOT, "src", "metrics", "process.rs")
PUBLIC = "https://sso.example.com"
ISSUER = PUBLIC + "/realms/demo"
MAX_IN_FLIGHT = 4
RATE_INTERVAL = "30s"


def log(msg):
    print(f"dashboard-check: {msg}", file=sys.stderr, flush=True)


def fail(msg):
    log("FAIL: " + msg)
    sys.exit(1)


def defined_metrics():
    """Metric names registered in src/metrics.rs (prefix dcr_gateway_), with histogram series,
    and the process metrics of src/metrics/process.rs (process_*, unprefixed)."""
    src = open(METRICS_RS, encoding="utf-8").read()
    names = set(re.findall(r'(?:counter|gauge_vec)\(\s*&reg,\s*"([a-z0-9_]+)"', src))
    names |= set(re.findall(r'(?:Opts|IntGauge|Gauge)::new\(\s*"([a-z0-9_]+)"', src))
    hist = set(re.findall(r'(?:HistogramOpts::new\(|hist\(\s*&reg,)\s*"([a-z0-9_]+)"', src))
    out = {"dcr_gateway_" + n for n in names}
    process = open(PROCESS_RS, encoding="utf-8").read()
    out |= set(re.findall(r'"(process_[a-z0-9_]+)"', process))
    for h in hist:
        out |= {f"dcr_gateway_{h}_{s}" for s in ("bucket", "sum", "count")}
    if len(out) < 10:
        fail(f"found only {sorted(out)} in {METRICS_RS}: has the registration code changed shape?")
    return out


def used_metrics(text):
    return set(re.findall(r"\b((?:dcr_gateway|process)_[a-z0-9_]+)", text))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
        return 0, str(e).encode()


def wait_for(what, check, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    fail(f"{what} not within {seconds} s")


def start_gateway(binary, state, upstream_port, policies):
    cfg = os.path.join(state, "gateway.toml")
    with open(cfg, "w", encoding="utf-8") as f:
        f.write(
            f"""listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
upstream = "http://127.0.0.1:{upstream_port}"
public_url = "{PUBLIC}"
policies = "{policies}"
log_format = "json"
max_in_flight = {MAX_IN_FLIGHT}

[timeouts]
response = "1s"
policy_poll = "1s"

[jwks]
prefetch = ["demo"]
"""
        )
    log_path = os.path.join(state, "gateway.log")
    out = open(log_path, "w")
    proc = subprocess.Popen([binary, "serve", "--config", cfg], stdout=out, stderr=out)
    addrs = {}

    def started():
        if proc.poll() is not None:
            fail(f"the gateway exited with {proc.returncode}; see {log_path}")
        for line in open(log_path, encoding="utf-8", errors="replace"):
            if "dcr-gateway serving" in line:
                rec = json.loads(line)
                fields = rec.get("fields", rec)
                addrs["listen"], addrs["admin"] = fields["listen"], fields["admin"]
                return True
        return False

    wait_for("the gateway's start", started, 30)
    return proc, "http://" + addrs["listen"], "http://" + addrs["admin"]


def start_prometheus(state, admin_url):
    port = free_port()
    cfg = os.path.join(state, "prometheus.yml")
    target = admin_url.split("//", 1)[1]
    with open(cfg, "w", encoding="utf-8") as f:
        f.write(
            f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: dcr-gateway
    static_configs:
      - targets: ["{target}"]
rule_files: ["{ALERTS}"]
"""
        )
    subprocess.run(["promtool", "check", "config", cfg], check=True, capture_output=True)
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={cfg}",
            f"--storage.tsdb.path={os.path.join(state, 'prom')}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(state, "prometheus.log"), "w"),
    )
    url = f"http://127.0.0.1:{port}"
    wait_for("Prometheus ready", lambda: http("GET", url + "/-/ready")[0] == 200, 60)
    return proc, url


def query(prom, expr):
    status, body = http("POST", prom + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    try:
        doc = json.loads(body)
    except ValueError:
        return status, {"status": "error", "error": body.decode(errors="replace")}
    return status, doc


def traffic(gw, key, policies_dir):
    """About 20 s of mixed traffic; returns the status codes seen, by kind."""
    url = gw + "/realms/demo/clients-registrations/openid-connect"
    seen = {}

    def send(kind, token, body):
        status, _ = http("POST", url, body, {"Authorization": "Bearer " + token}, timeout=15)
        seen.setdefault(kind, []).append(status)

    greedy = key.token(standin.service_account_claims(ISSUER, "greedy", ["create-client"]))
    norole = key.token(standin.service_account_claims(ISSUER, "norole", []))
    forged = key.token(standin.service_account_claims(ISSUER, "registrar", ["create-client"]))
    forged = forged[:-8] + ("AAAAAAAA" if not forged.endswith("AAAAAAAA") else "BBBBBBBB")
    good_body = {"client_name": "app", "redirect_uris": ["https://app.example.com/cb"]}
    broken = os.path.join(policies_dir, "zz-broken.toml")
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        for i in range(24):
            fresh = key.token(standin.service_account_claims(ISSUER, f"registrar-{i}", ["create-client"]))
            send("allowed", fresh, good_body)
            send("allowed_again", fresh, good_body)  # the verified-token cache
            send("quota", greedy, good_body)
            send("missing_role", norole, good_body)
            send("bad_redirect", fresh, {"client_name": "x", "redirect_uris": ["https://evil.test/cb"]})
            send("forged", forged, good_body)
            send("kc_refuse", fresh, {"client_name": "kc-refuse", "redirect_uris": ["https://app.example.com/cb"]})
            send("dropped", fresh, {"client_name": "drop", "redirect_uris": ["https://app.example.com/cb"]})
            status, _ = http("GET", gw + "/realms/demo/account")
            seen.setdefault("other", []).append(status)
            if i % 4 == 0:
                burst = [
                    pool.submit(
                        send,
                        "slow",
                        key.token(standin.service_account_claims(ISSUER, f"slow-{i}-{j}", ["create-client"])),
                        {"client_name": "slow", "redirect_uris": ["https://app.example.com/cb"]},
                    )
                    for j in range(MAX_IN_FLIGHT * 2)
                ]
                concurrent.futures.wait(burst)
            if i == 6:
                with open(broken, "w", encoding="utf-8") as f:
                    f.write("version = 1\n[realms.demo.create]\nroles_anyy = []\n")
            if i == 14:
                os.remove(broken)
            time.sleep(0.3)
    return seen


def expect_statuses(seen):
    want = {
        "allowed": {201},
        "missing_role": {403},
        "bad_redirect": {400},
        "forged": {401},
        "dropped": {502},
    }
    for kind, codes in want.items():
        got = set(seen.get(kind, []))
        if not got or not got <= codes:
            fail(f"{kind} requests answered {sorted(got)}, expected {sorted(codes)}")
    if 429 not in seen.get("quota", []):
        fail(f"the quota never refused: {sorted(set(seen.get('quota', [])))}")
    if 504 not in seen.get("slow", []) or 503 not in seen.get("slow", []):
        fail(f"slow bursts gave {sorted(set(seen.get('slow', [])))}, expected 504 (timeout) and 503 (shed)")


def check_panels(prom):
    dash = json.load(open(DASHBOARD, encoding="utf-8"))
    subst = {
        "$job": "dcr-gateway",
        "$instance": ".+",
        "$__rate_interval": RATE_INTERVAL,
        "$max_in_flight": str(MAX_IN_FLIGHT),
    }
    checked, problems = 0, []
    ids = set()
    for panel in dash["panels"]:
        if panel.get("id") in ids:
            problems.append(f"duplicate panel id {panel.get('id')}")
        ids.add(panel.get("id"))
        if panel["type"] == "row":
            continue
        if not panel.get("targets"):
            problems.append(f"panel {panel['title']!r} has no query")
        for target in panel.get("targets", []):
            expr = target["expr"]
            for var, value in subst.items():
                expr = expr.replace(var, value)
            if "$" in expr:
                problems.append(f"{panel['title']!r}: unknown variable in {target['expr']}")
                continue
            status, doc = query(prom, expr)
            checked += 1
            if doc.get("status") != "success":
                problems.append(f"{panel['title']!r} [{target['refId']}] does not parse: {doc.get('error')}: {expr}")
                continue
            values = [float(r["value"][1]) for r in doc["data"]["result"]]
            finite = [v for v in values if v == v and abs(v) != float("inf")]
            if not finite:
                problems.append(f"{panel['title']!r} [{target['refId']}] returned no data: {expr} -> {values}")
            else:
                log(f"ok  {panel['title']} [{target['refId']}]: {len(finite)} series")
    for var in dash["templating"]["list"]:
        q = var.get("definition", "")
        m = re.fullmatch(r"label_values\((.+), (\w+)\)", q)
        if var["type"] == "query":
            if not m:
                problems.append(f"variable {var['name']}: unexpected query {q!r}")
                continue
            series, label = m.group(1).replace("$job", "dcr-gateway"), m.group(2)
            status, body = http("GET", prom + "/api/v1/series?" + urllib.parse.urlencode({"match[]": series}))
            found = {s.get(label) for s in json.loads(body).get("data", [])} - {None}
            if not found:
                problems.append(f"variable {var['name']}: no values for {q}")
            else:
                log(f"ok  variable {var['name']}: {sorted(found)}")
    return checked, problems


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    binary, state = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    shutil.rmtree(state, ignore_errors=True)
    os.makedirs(state)
    defined = defined_metrics()
    for path in (DASHBOARD, ALERTS):
        unknown = used_metrics(open(path, encoding="utf-8").read()) - defined
        if unknown:
            fail(f"{os.path.relpath(path, ROOT)} names metrics src/metrics.rs does not define: {sorted(unknown)}")
    log(f"every metric named by the dashboard and the alerts is defined in src/metrics.rs ({len(defined)} series names)")

    policies = os.path.join(state, "policies")
    os.makedirs(policies)
    with open(os.path.join(ROOT, "policies", "demo.toml"), encoding="utf-8") as src:
        demo = src.read()
    with open(os.path.join(policies, "demo.toml"), "w", encoding="utf-8") as f:
        f.write(demo + '\n[realms.demo.quota]\ncreates = 5\nwindow = "1m"\n')

    key = standin.SigningKey()
    procs = []
    try:
        with standin.StandIn(key) as kc:
            gw_proc, gw, admin = start_gateway(binary, state, kc.port, policies)
            procs.append(gw_proc)
            wait_for("/readyz 200 (keys after one failed fetch)", lambda: http("GET", admin + "/readyz")[0] == 200, 30)
            prom_proc, prom = start_prometheus(state, admin)
            procs.append(prom_proc)
            wait_for("the first scrape", lambda: query(prom, 'up{job="dcr-gateway"} == 1')[1].get("data", {}).get("result"), 30)
            started = time.monotonic()
            seen = traffic(gw, key, policies)
            log(f"traffic sent in {time.monotonic() - started:.1f} s: " + ", ".join(f"{k} {sorted(set(v))}" for k, v in sorted(seen.items())))
            expect_statuses(seen)
            time.sleep(3)  # the last scrapes
            checked, problems = check_panels(prom)
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    if problems:
        for p in problems:
            log("problem: " + p)
        fail(f"{len(problems)} dashboard problems ({checked} queries evaluated)")
    log(f"{checked} panel queries parse and return data")


if __name__ == "__main__":
    main()
