"""python oic (pyoidc) registering clients through dcr-gateway against a real Keycloak.

oic's own API: discovery with Client.provider_config(issuer), then
Client.register(registration_endpoint, registration_token=TOKEN, **metadata), which sends
`Authorization: Bearer TOKEN` (a JWT as it is) and, for a 4xx answer, logs
"Got error response: <body>" on the `oic.oic` logger and raises
RegistrationError(<the body as a dict>).

Run by scripts/keycloak-clients-oic-kcreg.sh in a venv made from requirements.txt, with GW_URL
(the gateway), KC_URL (Keycloak itself, for contrast), REALM and KC_IAT (an initial access token
minted through the gateway) set:

    python -m unittest -v test_oic
"""

import os
import sys
import unittest

import requests
from oic.exception import RegistrationError
from oic.oic import Client
from oic.utils.authn.client import CLIENT_AUTHN_METHOD
from oic.utils.settings import OicClientSettings

GW = os.environ["GW_URL"].rstrip("/")
KC = os.environ["KC_URL"].rstrip("/")
REALM = os.environ.get("REALM", "demo")
# The realm's policy (policies/demo.toml) allows https on *.example.com and loopback.
METADATA = {
    "redirect_uris": ["https://app.example.com/oic/cb"],
    "response_types": ["code"],
    "token_endpoint_auth_method": "client_secret_basic",
}


def service_account_token(base, client_id, secret):
    """A client_credentials access token minted through BASE (its issuer is BASE's)."""
    r = requests.post(
        f"{base}/realms/{REALM}/protocol/openid-connect/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
        timeout=30,
    )
    assert r.status_code == 200, f"token for {client_id}: HTTP {r.status_code} {r.text[:300]}"
    return r.json()["access_token"]


def discovered(base=GW, base_url="https://app.example.com/oic/"):
    """An oic Client that read the realm's metadata at BASE, and the registration endpoint.
    Its HTTP session records each answer's (method, status) in client.statuses.

    Keycloak's discovery says require_request_uri_registration: true, so oic's register()
    adds request_uris = [base_url + "requests/<sha256>"]: an RP sets base_url to its own URL.
    """
    statuses = []
    session = requests.Session()
    session.hooks["response"].append(lambda r, *_, **__: statuses.append((r.request.method, r.status_code)))
    client = Client(client_authn_method=CLIENT_AUTHN_METHOD, settings=OicClientSettings(requests_session=session))
    client.statuses = statuses
    client.base_url = base_url
    issuer = f"{base}/realms/{REALM}"
    info = client.provider_config(issuer)
    assert info["issuer"] == issuer, info["issuer"]
    endpoint = info["registration_endpoint"]
    assert endpoint.startswith(f"{base}/"), f"{endpoint} is not behind {base}"
    return client, endpoint


def refused(test, client, endpoint, token, name, status):
    """register() must raise RegistrationError after an answer of STATUS; returns it."""
    with test.assertLogs("oic", level="ERROR") as logged:
        with test.assertRaises(RegistrationError) as raised:
            client.register(endpoint, registration_token=token, client_name=name, **METADATA)
    test.assertEqual(client.statuses[-1], ("POST", status))
    err = raised.exception
    err.logged = [f"{r.levelname}:{r.name}:{r.getMessage()}" for r in logged.records]
    return err


def show(label, text):
    """One line for the log, quoted by docs/errors.md: what the client showed."""
    print(f"{label}: {text}", file=sys.stderr, flush=True)


class OicThroughGateway(unittest.TestCase):
    def registered(self, token, name):
        client, endpoint = discovered()
        resp = client.register(endpoint, registration_token=token, client_name=name, **METADATA)
        self.assertEqual(client.statuses[-1], ("POST", 201))
        self.assertTrue(resp["client_id"], resp.to_dict())
        self.assertEqual(client.client_id, resp["client_id"])
        self.assertTrue(client.client_secret, "a confidential client gets a secret")
        self.assertTrue(resp["request_uris"][0].startswith("https://app.example.com/oic/requests/"), resp.to_dict())
        self.assertTrue(resp["registration_client_uri"].startswith(f"{endpoint}/"), resp["registration_client_uri"])
        # RFC 7592 read with oic's own call and the registration access token it kept.
        again = client.registration_read()
        self.assertEqual((again["client_id"], again["client_name"]), (resp["client_id"], name))
        show("oic registered", f"HTTP 201 client_id={resp['client_id']} client_name={name!r}")

    def test_register_with_service_account_token(self):
        """registrar's service account holds realm-management/create-client: 201."""
        self.registered(service_account_token(GW, "registrar", "registrar-secret"), "oic via registrar")

    def test_register_with_initial_access_token(self):
        self.registered(os.environ["KC_IAT"], "oic via initial access token")

    def test_forum_case_norole_names_the_fix(self):
        """norole's service account lacks create-client: the exception oic raises names the fix."""
        client, endpoint = discovered()
        token = service_account_token(GW, "norole", "norole-secret")
        err = refused(self, client, endpoint, token, "oic norole", 403)
        text = str(err)
        show("oic raises", f"{type(err).__module__}.{type(err).__name__}: {text}")
        for line in err.logged:
            show("oic logs", line)
        # The answer's members reach the caller as a dict in args[0], hint and reason included.
        body = err.args[0]
        self.assertIsInstance(body, dict, text)
        self.assertEqual((body.get("error"), body.get("reason")), ("insufficient_scope", "missing_role"), text)
        self.assertIn("kcadm.sh add-roles", body.get("hint", ""), text)
        # What a user reads: the exception's text names the role and where to assign it.
        self.assertRegex(text, r"Assign realm-management/create-client under Clients → norole → Service account roles")
        self.assertIn("then request a new token", text)
        self.assertTrue(any("Service account roles" in line for line in err.logged), err.logged)

        # The same call straight to Keycloak: what the forum's user saw.
        client, endpoint = discovered(KC)
        err = refused(self, client, endpoint, service_account_token(KC, "norole", "norole-secret"), "oic norole", 403)
        show("oic raises (straight to Keycloak)", f"{type(err).__name__}: {err}")
        self.assertEqual(err.args[0], {"error": "insufficient_scope", "error_description": "Forbidden"})

    def test_without_base_url_request_uris_is_refused(self):
        """Without base_url oic sends request_uris ["requests/<sha256>"]. Keycloak stores that as
        it is; the gateway refuses a request URI without a scheme (Keycloak fetches request_uris)
        and the exception's text says so."""
        client, endpoint = discovered(base_url="")
        token = service_account_token(GW, "registrar", "registrar-secret")
        err = refused(self, client, endpoint, token, "oic no base_url", 400)
        show("oic raises (no base_url)", f"{type(err).__name__}: {err.args[0].get('error_description')}")
        self.assertEqual(err.args[0].get("reason"), "server_url_not_allowed", str(err))
        self.assertRegex(str(err), r"`request_uris` value `requests/[0-9a-f]{64}` is malformed: it has no scheme")

        client, endpoint = discovered(KC, base_url="")
        token = service_account_token(KC, "registrar", "registrar-secret")
        resp = client.register(endpoint, registration_token=token, client_name="oic no base_url", **METADATA)
        self.assertEqual(client.statuses[-1], ("POST", 201))
        self.assertRegex(resp["request_uris"][0], r"^requests/[0-9a-f]{64}$", "Keycloak stores it as sent")


if __name__ == "__main__":
    unittest.main(verbosity=2)
