"""A stand-in Keycloak for the deploy checks: a realm's JWKS and the registration endpoint,
with answers chosen by the request, and RS256 tokens signed with `openssl`.

Python's standard library and the openssl command only. Listens on 127.0.0.1, port 0.

What the registration endpoint answers, by the body's client_name:
  "kc-refuse"  400 invalid_client_metadata (the gateway rewrites it)
  "slow"       201 after SLOW_SECONDS (longer than the gateway's response timeout)
  "drop"       closes the connection without an answer (an upstream protocol error)
  anything     201 with a client representation
The JWKS of every realm fails with 503 on its first fetch (unless flaky_jwks=False), then
serves the key.
"""

import base64
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SLOW_SECONDS = 2.5


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SigningKey:
    """An RSA key made at run time with openssl; signs RS256 JWTs."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="standin-key-")
        self.pem = os.path.join(self.dir, "key.pem")
        subprocess.run(
            ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", self.pem],
            check=True,
            capture_output=True,
        )
        out = subprocess.run(
            ["openssl", "rsa", "-in", self.pem, "-noout", "-modulus"], check=True, capture_output=True, text=True
        ).stdout
        modulus = bytes.fromhex(out.strip().split("=", 1)[1])
        self.kid = "standin-" + uuid.uuid4().hex[:8]
        self.jwk = {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256", "n": b64url(modulus), "e": "AQAB"}

    def token(self, claims):
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        sig = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", self.pem],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return signing_input + "." + b64url(sig)


def service_account_claims(issuer, azp, roles, ttl=600):
    """A Keycloak-like service-account access token's claims."""
    now = int(time.time())
    return {
        "exp": now + ttl,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "iss": issuer,
        "aud": ["realm-management", "account"],
        "sub": str(uuid.uuid4()),
        "typ": "Bearer",
        "azp": azp,
        "scope": "profile email",
        "resource_access": {"realm-management": {"roles": list(roles)}},
        "preferred_username": f"service-account-{azp}",
        "client_id": azp,
    }


class StandIn:
    """The stand-in server, on a thread."""

    def __init__(self, key, flaky_jwks=True):
        self.key = key
        self.flaky_jwks = flaky_jwks
        self.jwks_fetches = {}
        self.lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, body, content_type="application/json"):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) == 5 and parts[0] == "realms" and parts[2:] == ["protocol", "openid-connect", "certs"]:
                    with standin.lock:
                        n = standin.jwks_fetches.get(parts[1], 0)
                        standin.jwks_fetches[parts[1]] = n + 1
                    if n == 0 and standin.flaky_jwks:
                        return self.reply(503, {"error": "unavailable"})
                    return self.reply(200, {"keys": [standin.key.jwk]})
                return self.reply(200, {"path": self.path})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                name = body.get("client_name", "")
                if name == "kc-refuse":
                    return self.reply(
                        400, {"error": "invalid_client_metadata", "error_description": "Invalid client metadata"}
                    )
                if name == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                if name == "slow":
                    time.sleep(SLOW_SECONDS)
                client_id = str(uuid.uuid4())
                host = self.headers.get("Host", "")
                return self.reply(
                    201,
                    dict(
                        body,
                        client_id=client_id,
                        registration_client_uri=f"http://{host}{self.path}/{client_id}",
                        registration_access_token="standin",
                    ),
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *args: None  # "drop" answers end in a broken pipe
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def main():
    """standin.py serve DIR ISSUER: serves until SIGTERM; writes DIR/port and DIR/token (a
    bearer token of service account `registrar` with create-client, issued by ISSUER)."""
    import signal
    import sys

    if len(sys.argv) != 4 or sys.argv[1] != "serve":
        sys.exit(main.__doc__)
    out, issuer = sys.argv[2], sys.argv[3]
    key = SigningKey()
    with StandIn(key, flaky_jwks=False) as kc:
        with open(os.path.join(out, "token"), "w", encoding="utf-8") as f:
            f.write(key.token(service_account_claims(issuer, "registrar", ["create-client"])))
        with open(os.path.join(out, "port.tmp"), "w", encoding="utf-8") as f:
            f.write(str(kc.port))
        os.replace(os.path.join(out, "port.tmp"), os.path.join(out, "port"))
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        stop.wait()


if __name__ == "__main__":
    main()
