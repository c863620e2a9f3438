// A real OAuth 2.0 authorization server for the integration tests:
// node-oidc-provider on an ephemeral loopback port, configured the way a
// phantom-token gateway uses an AS (introspection, RFC 9701 signed answers,
// revocation, client credentials, DPoP, opaque access tokens).
//
// Started by tests/support/oidc_provider.rs. When ready it prints one JSON
// line on stdout: the issuer, the clients and their credentials, and the
// address of a second, test-only loopback listener that issues user tokens
// through the provider's own models (no browser needed). It exits when its
// stdin closes, so it never outlives the test that started it.
//
// Options (JSON in OIDC_TEST_OPTIONS): { "accessTokenTtl": seconds }.

import { createServer } from 'node:http';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { once } from 'node:events';

import Provider from 'oidc-provider';

const options = JSON.parse(process.env.OIDC_TEST_OPTIONS || '{}');
const accessTokenTtl = Number(options.accessTokenTtl ?? 300);

const LOOPBACK = '127.0.0.1';
const SCOPES = ['orders:read', 'orders:write'];

function privateJwk(type, params, kid, alg) {
  const { privateKey } = generateKeyPairSync(type, params);
  return { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

// The AS's own signing keys: EC for one client's signed introspection
// answers, RSA for another's.
const asKeys = [
  privateJwk('ec', { namedCurve: 'P-256' }, 'as-es256', 'ES256'),
  privateJwk('rsa', { modulusLength: 2048 }, 'as-rs256', 'RS256'),
];

// The gateway's key for private_key_jwt, registered with the client below
// the way an operator registers the gateway's published JWK: with its
// RFC 7638 thumbprint as kid.
const assertionKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const { crv, kty, x, y } = assertionKey.publicKey.export({ format: 'jwk' });
const assertionPublicJwk = {
  crv, kty, x, y,
  kid: createHash('sha256').update(JSON.stringify({ crv, kty, x, y })).digest('base64url'),
  use: 'sig',
};
const assertionKeyPem = assertionKey.privateKey.export({ format: 'pem', type: 'pkcs8' });

const secret = () => randomBytes(24).toString('base64url');
const clients = {
  // The gateway with client_secret_basic; signed answers with ES256.
  gateway: { client_id: 'gateway', client_secret: secret() },
  // The gateway with client_secret_post.
  gatewayPost: { client_id: 'gateway-post', client_secret: secret() },
  // The gateway with private_key_jwt; signed answers with RS256.
  gatewayJwt: { client_id: 'gateway-jwt' },
  // An application that obtains tokens (client credentials) and revokes them.
  app: { client_id: 'app', client_secret: secret() },
};

// Extra claims per account, set by the test endpoint; the provider adds
// them to the account's tokens the way an operator's extraTokenClaims does.
const extraClaims = new Map();

const noRedirects = { grant_types: [], response_types: [], redirect_uris: [] };

const listener = createServer();
listener.listen(0, LOOPBACK);
await once(listener, 'listening');
const issuer = `http://${LOOPBACK}:${listener.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      ...clients.gateway,
      ...noRedirects,
      token_endpoint_auth_method: 'client_secret_basic',
      introspection_signed_response_alg: 'ES256',
    },
    {
      ...clients.gatewayPost,
      ...noRedirects,
      token_endpoint_auth_method: 'client_secret_post',
    },
    {
      ...clients.gatewayJwt,
      ...noRedirects,
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'ES256',
      jwks: { keys: [assertionPublicJwk] },
      introspection_signed_response_alg: 'RS256',
    },
    {
      ...clients.app,
      ...noRedirects,
      grant_types: ['client_credentials'],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: SCOPES.join(' '),
    },
  ],
  jwks: { keys: asKeys },
  scopes: SCOPES,
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // Only the gateway's clients may introspect.
      allowedPolicy: async (ctx, client) => client.clientId.startsWith('gateway'),
    },
    jwtIntrospection: { enabled: true },
    revocation: {
      enabled: true,
      // A client revokes only its own tokens.
      allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId,
    },
    dPoP: { enabled: true },
  },
  ttl: {
    AccessToken: accessTokenTtl,
    ClientCredentials: accessTokenTtl,
  },
  extraTokenClaims: async (ctx, token) => extraClaims.get(token.accountId),
  findAccount: async (ctx, sub) => ({
    accountId: sub,
    async claims() {
      return { sub };
    },
  }),
  cookies: { keys: [secret()] },
});
provider.on('server_error', (ctx, error) => {
  process.stderr.write(`oidc-provider server_error: ${error.stack}\n`);
});
// Why a request was refused (never the credentials themselves): shown by
// the harness when a test fails.
for (const event of ['introspection.error', 'revocation.error', 'grant.error']) {
  provider.on(event, (ctx, error) => {
    process.stderr.write(`${event}: ${error.message} (${error.error_detail ?? ''})\n`);
  });
}
listener.on('request', provider.callback());

// Test-only: issue a user's access token through the provider's own model.
// POST /tokens {"sub", "client_id"?, "scope"?, "ttl"?, "aud"?, "extra"?, "jkt"?}
// → {"access_token", "expires_in"}
async function issueToken(request) {
  const input = JSON.parse(request || '{}');
  const client = await provider.Client.find(input.client_id ?? clients.app.client_id);
  if (!client) throw new Error('unknown client');
  if (input.extra) extraClaims.set(input.sub, input.extra);
  const token = new provider.AccessToken({
    accountId: input.sub,
    client,
    scope: input.scope ?? SCOPES[0],
    expiresIn: Number(input.ttl ?? accessTokenTtl),
    ...(input.aud ? { aud: input.aud } : {}),
    ...(input.jkt ? { jkt: input.jkt } : {}),
  });
  const value = await token.save();
  return { access_token: value, expires_in: token.expiration };
}

const control = createServer(async (req, res) => {
  let body = '';
  for await (const chunk of req) body += chunk;
  try {
    if (req.method !== 'POST' || req.url !== '/tokens') {
      res.writeHead(404).end();
      return;
    }
    const issued = await issueToken(body);
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(issued));
  } catch (error) {
    res.writeHead(400, { 'content-type': 'application/json' })
      .end(JSON.stringify({ error: String(error.message) }));
  }
});
control.listen(0, LOOPBACK);
await once(control, 'listening');

process.stdout.write(`${JSON.stringify({
  issuer,
  control: `http://${LOOPBACK}:${control.address().port}`,
  clients,
  assertion_key_pem: assertionKeyPem,
  access_token_ttl: accessTokenTtl,
})}\n`);

// Never outlive the test: exit when the parent closes our stdin.
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
