// A real OpenID provider for ztgate's tests: oidc-provider issuing RS256 JWT access tokens
// (RFC 9068, `typ: at+jwt`) by the OAuth client-credentials grant.
//
//   node tools/oidc/provider.mjs --port PORT --jwks FILE [--issuer URL] [--ttl SECONDS]
//
// FILE is a private JWKS ({"keys": [RSA private JWKs with kid, alg RS256, use sig]}); its keys
// are the only signing keys, so a test rotates keys by restarting with a new file. The access
// token TTL comes from --ttl, else OIDC_ACCESS_TOKEN_TTL, else 600 s. Prints one line
// `READY <issuer>` on stdout once listening; exits 0 on SIGTERM or SIGINT.
//
// Plain http issuers are fine here: oidc-provider does not enforce https on the issuer itself
// (only some client metadata checks depend on it), and it only listens on 127.0.0.1.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const AUDIENCE = 'https://ztgate.internal';

const CLIENTS = [
  {
    client_id: 'ci-runner',
    client_secret: 'ci-runner-secret',
    scope: 'skill:xlsx skill:pdf messages',
  },
  {
    client_id: 'data-agent',
    client_secret: 'data-agent-secret',
    scope: 'skill:xlsx',
  },
].map((client) => ({
  ...client,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_basic',
}));

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    jwks: { type: 'string' },
    issuer: { type: 'string' },
    ttl: { type: 'string' },
  },
});

function fail(message) {
  process.stderr.write(`provider.mjs: ${message}\n`);
  process.exit(2);
}

const port = Number.parseInt(args.port ?? '', 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) fail('--port PORT is required');
if (!args.jwks) fail('--jwks FILE is required');
const ttl = Number.parseInt(args.ttl ?? process.env.OIDC_ACCESS_TOKEN_TTL ?? '600', 10);
if (!Number.isInteger(ttl) || ttl <= 0) fail('--ttl must be a positive number of seconds');
const issuer = args.issuer ?? `http://127.0.0.1:${port}`;
const jwks = JSON.parse(readFileSync(args.jwks, 'utf8'));

const allScopes = new Set(CLIENTS.flatMap((client) => client.scope.split(' ')));

const provider = new Provider(issuer, {
  clients: CLIENTS,
  jwks,
  // Registered here so that asking for a scope the client is not allowed fails with
  // invalid_scope instead of being dropped silently.
  scopes: ['openid', ...allScopes],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: false },
    revocation: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, _client, oneOf) => oneOf ?? AUDIENCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator, client) => {
        // A client-credentials request without `scope` gets all of the client's scopes
        // (oidc-provider would otherwise issue a token with no scope at all).
        if (ctx.oidc.route === 'token' && ctx.oidc.params.grant_type === 'client_credentials'
            && !ctx.oidc.params.scope) {
          ctx.oidc.params.scope = client.scope;
        }
        return {
          scope: client.scope,
          audience: resourceIndicator,
          accessTokenTTL: ttl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  ttl: {
    ClientCredentials: ttl,
    AccessToken: ttl,
  },
  // No browser flows are served, but the cookie keys must not be the built-in defaults.
  cookies: { keys: [crypto.randomUUID()] },
});

const server = createServer(provider.callback());

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`READY ${issuer}\n`);
});
