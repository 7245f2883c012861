// Real RFC 7591 clients registering anonymously: the MCP TypeScript SDK's registerClient and
// openid-client's dynamicClientRegistration, through dcr-gateway (anonymous mode, Keycloak's
// Trusted Hosts left at its default) and, for contrast, straight to Keycloak.
// Run by scripts/keycloak-clients.sh with GW_URL, KC_URL, REALM and QUOTA set.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { discoverAuthorizationServerMetadata, registerClient } from '@modelcontextprotocol/sdk/client/auth.js';
import * as oidc from 'openid-client';

const GW = process.env.GW_URL;
const KC = process.env.KC_URL;
const REALM = process.env.REALM ?? 'demo';
assert.ok(GW && KC, 'GW_URL and KC_URL must be set');

const mcpMetadata = (port) => ({
  client_name: 'dcr-gateway MCP SDK test',
  redirect_uris: [`http://127.0.0.1:${port}/callback`],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'none',
  // Members Keycloak does not know (RFC 8707 resource, an extension): RFC 7591 §2 says ignore.
  resource: 'https://mcp.example.com/',
  software_id: 'dcr-gateway-tests',
});

const oidcMetadata = (port) => ({
  client_name: 'dcr-gateway openid-client test',
  redirect_uris: [`http://127.0.0.1:${port}/cb`],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'none',
  scope: 'openid profile',
});

async function mcpRegister(base, metadata) {
  const issuer = new URL(`${base}/realms/${REALM}`);
  const as = await discoverAuthorizationServerMetadata(issuer);
  assert.ok(as?.registration_endpoint, `no registration_endpoint discovered at ${issuer}`);
  assert.ok(as.registration_endpoint.startsWith(base), `${as.registration_endpoint} is not behind ${base}`);
  // The SDK keeps only RFC 7591 client information: the RFC 7592 members (registration
  // access token and URI) are read from the wire through its fetchFn hook.
  let wire;
  const fetchFn = async (url, init) => {
    const response = await fetch(url, init);
    if (init?.method === 'POST' && response.ok) wire = await response.clone().json();
    return response;
  };
  const client = await registerClient(issuer, { metadata: as, clientMetadata: metadata, fetchFn });
  assert.equal(client.client_id, wire.client_id);
  return { ...client, registration_client_uri: wire.registration_client_uri, registration_access_token: wire.registration_access_token };
}

async function oidcRegister(base, metadata) {
  const config = await oidc.dynamicClientRegistration(new URL(`${base}/realms/${REALM}`), metadata, oidc.None(), {
    execute: [oidc.allowInsecureRequests],
  });
  return config.clientMetadata();
}

/** The error a client raised, as the text it shows: the MCP SDK's message, openid-client's error_description. */
async function refusal(promise) {
  try {
    await promise;
  } catch (e) {
    return { name: e.constructor?.name, message: e.message, description: e.error_description ?? e.message, error: e.error ?? e.errorCode, status: e.status ?? e.cause?.status };
  }
  assert.fail('the registration was accepted');
}

/** RFC 7592 read and update with the registration access token. */
async function readAndUpdate(client, rename) {
  const uri = client.registration_client_uri;
  assert.ok(uri?.startsWith(GW), `registration_client_uri ${uri} points behind the gateway`);
  const read = await fetch(uri, { headers: { authorization: `Bearer ${client.registration_access_token}` } });
  assert.equal(read.status, 200, await read.clone().text());
  const current = await read.json();
  assert.equal(current.client_id, client.client_id);
  const update = await fetch(uri, {
    method: 'PUT',
    headers: { authorization: `Bearer ${current.registration_access_token ?? client.registration_access_token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ ...current, client_name: rename }),
  });
  const text = await update.text();
  assert.equal(update.status, 200, text);
  const updated = JSON.parse(text);
  assert.equal(updated.client_name, rename);
  assert.ok(updated.registration_access_token, 'Keycloak rotates the registration access token on update');
  const payload = JSON.parse(Buffer.from(updated.registration_access_token.split('.')[1], 'base64url'));
  assert.equal(payload.registration_auth, 'authenticated', 'later RAT calls run Keycloak\'s authenticated policy set');
  return updated;
}

const created = {};

test('MCP SDK registerClient, anonymous, through the gateway: 201, then read and update', async () => {
  const client = await mcpRegister(GW, mcpMetadata(33418));
  assert.ok(client.client_id, JSON.stringify(client));
  assert.equal(client.token_endpoint_auth_method, 'none');
  created.mcp = await readAndUpdate(client, 'dcr-gateway MCP SDK test (renamed)');
});

test('openid-client dynamicClientRegistration, anonymous, through the gateway: 201, then read and update', async () => {
  const client = await oidcRegister(GW, oidcMetadata(33419));
  assert.ok(client.client_id, JSON.stringify(client));
  created.oidc = await readAndUpdate(client, 'dcr-gateway openid-client test (renamed)');
});

test('off-policy redirect URI: both clients refused, the message names the fix', async (t) => {
  const mcp = await refusal(mcpRegister(GW, { ...mcpMetadata(1), redirect_uris: ['https://evil.example/callback'] }));
  t.diagnostic(`MCP SDK shows: ${mcp.name}: ${mcp.message}`);
  assert.equal(mcp.name, 'InsufficientScopeError', JSON.stringify(mcp));
  assert.match(mcp.message, /evil\.example.*loopback.*127\.0\.0\.1/s, mcp.message);
  const o = await refusal(oidcRegister(GW, { ...oidcMetadata(1), redirect_uris: ['https://evil.example/cb'] }));
  t.diagnostic(`openid-client shows: ${o.name ?? ''} ${o.error}: ${o.description}`);
  assert.equal(o.error, 'insufficient_scope', JSON.stringify(o));
  assert.equal(o.status, 403, JSON.stringify(o));
  assert.match(o.description, /evil\.example.*loopback.*127\.0\.0\.1/s, o.description);
});

test('over-quota burst: both clients refused, the message names the fix', async (t) => {
  const quota = Number(process.env.QUOTA);
  assert.ok(quota >= 2, 'QUOTA (creates per address) must be set');
  // Two creates are counted already; fill the quota, then go over it.
  for (let i = 2; i < quota; i++) {
    await mcpRegister(GW, mcpMetadata(40000 + i));
  }
  const mcp = await refusal(mcpRegister(GW, mcpMetadata(41000)));
  t.diagnostic(`MCP SDK shows: ${mcp.name}: ${mcp.message}`);
  assert.match(mcp.message, /try again in \d+s.*initial access token/s, mcp.message);
  const o = await refusal(oidcRegister(GW, oidcMetadata(41001)));
  t.diagnostic(`openid-client shows: ${o.name ?? ''} ${o.error}: ${o.description}`);
  assert.equal(o.status, 403, JSON.stringify(o));
  assert.match(o.description, /try again in \d+s.*initial access token/s, o.description);
});

test('the same calls straight to Keycloak are refused by its Trusted Hosts policy', async () => {
  const mcp = await refusal(mcpRegister(KC, { ...mcpMetadata(1), resource: undefined, software_id: undefined }));
  assert.equal(mcp.name, 'InsufficientScopeError', JSON.stringify(mcp));
  assert.match(mcp.message, /Trusted Hosts/, mcp.message);
  const o = await refusal(oidcRegister(KC, { ...oidcMetadata(1), scope: undefined }));
  assert.equal(o.status, 403, JSON.stringify(o));
  assert.equal(o.error, 'insufficient_scope', JSON.stringify(o));
  assert.match(o.description, /Trusted Hosts/, o.description);
  // With `scope`, Keycloak's anonymous Allowed Client Scopes policy refuses even sooner
  // (`openid` is no client scope); through the gateway `scope` is dropped (keycloak#50807).
  const scoped = await refusal(oidcRegister(KC, oidcMetadata(1)));
  assert.equal(scoped.status, 403, JSON.stringify(scoped));
  assert.match(scoped.description, /Policy '.+' rejected request/, scoped.description);
  // And without the gateway an unknown member is refused outright (RFC 7591 §2 says ignore it).
  const direct = await fetch(`${KC}/realms/${REALM}/clients-registrations/openid-connect`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(mcpMetadata(1)),
  });
  assert.equal(direct.status, 400, await direct.clone().text());
  assert.match(await direct.text(), /Unrecognized field/);
});

test("the forum's case: service account norole without create-client, through the gateway", async (t) => {
  // A client_credentials token of `norole` (provisioned without realm-management/create-client),
  // minted through the gateway, as the forum's user did.
  const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: 'norole', client_secret: 'norole-secret' });
  const tr = await fetch(`${GW}/realms/${REALM}/protocol/openid-connect/token`, { method: 'POST', body: form });
  assert.equal(tr.status, 200, await tr.clone().text());
  const { access_token: token } = await tr.json();
  let err;
  try {
    await oidc.dynamicClientRegistration(new URL(`${GW}/realms/${REALM}`), { ...oidcMetadata(1), token_endpoint_auth_method: 'client_secret_basic' }, undefined, {
      initialAccessToken: token,
      execute: [oidc.allowInsecureRequests],
    });
  } catch (e) {
    err = e;
  }
  assert.ok(err, 'the registration was accepted');
  // RFC 6750: a 403 with a WWW-Authenticate challenge makes openid-client throw the challenge
  // error; the gateway's description is in the challenge's parameters, the body stays readable.
  assert.equal(err.constructor?.name, 'WWWAuthenticateChallengeError', String(err));
  const described = err.cause?.[0]?.parameters?.error_description ?? '';
  const body = await err.response.json();
  t.diagnostic(`openid-client shows: ${err.constructor.name}: ${err.message}`);
  t.diagnostic(`openid-client err.cause[0].parameters.error_description: ${described}`);
  t.diagnostic(`openid-client err.response body: reason=${body.reason} error_description=${body.error_description}`);
  assert.equal(body.reason, 'missing_role', JSON.stringify(body));
  assert.match(body.error_description, /create-client.*Service account roles/s, body.error_description);
  assert.match(described, /create-client/, described);
});
