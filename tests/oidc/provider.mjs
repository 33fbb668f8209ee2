// A real OpenID Connect provider (npm's oidc-provider) for the integration tests, on loopback.
//
// Environment: PORT, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, ACCOUNTS (JSON: sub → claims).
// Access tokens are JWTs (RS256) for the client, carrying the account's claims (groups too), as
// Keycloak issues them. Interactive login is replaced by test hooks, since no person is there:
//   GET  /_test/next-user?sub=…   the account the next authorization request signs in as
//   POST /_test/sign              JSON claims → a JWT signed with the current key (?kid=…)
//   POST /_test/rotate            adds a new signing key to the published key set
// Prints "listening <issuer>" once it accepts requests.

import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is required`);
  return v;
};

const port = Number(env('PORT'));
const issuer = `http://127.0.0.1:${port}`;
const clientId = env('CLIENT_ID');
const accounts = JSON.parse(env('ACCOUNTS'));

function newKey(kid) {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
  return { kid, privateKey, jwk };
}

const publicJwk = ({ jwk }) => ({ kty: jwk.kty, n: jwk.n, e: jwk.e, kid: jwk.kid, alg: 'RS256', use: 'sig' });

const main = newKey('main');
const extra = [];
let nextUser = null;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: env('CLIENT_SECRET'),
    redirect_uris: [env('REDIRECT_URI')],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
  }],
  jwks: { keys: [main.jwk] },
  cookies: { keys: ['test-cookie-key-not-secret'] },
  findAccount: async (_ctx, sub) => accounts[sub] && {
    accountId: sub,
    claims: async () => ({ sub, ...accounts[sub] }),
  },
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name', 'groups'],
    email: ['email', 'email_verified'],
  },
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:hermes:api',
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'openid profile email',
        audience: clientId,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  extraTokenClaims: async (_ctx, token) => {
    const a = accounts[token.accountId];
    return a ? { ...a } : undefined;
  },
  issueRefreshToken: async () => true,
  ttl: { AccessToken: 3600, RefreshToken: 86400 },
});

function sign(claims, key) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${b64({ alg: 'RS256', typ: 'JWT', kid: key.kid })}.${b64(claims)}`;
  return `${input}.${crypto.sign('sha256', Buffer.from(input), key.privateKey).toString('base64url')}`;
}

async function body(ctx) {
  const chunks = [];
  for await (const c of ctx.req) chunks.push(c);
  return JSON.parse(Buffer.concat(chunks).toString() || '{}');
}

provider.use(async (ctx, next) => {
  if (ctx.path === '/jwks') {
    ctx.body = { keys: [main, ...extra].map(publicJwk) };
    return;
  }
  if (ctx.path === '/_test/next-user') {
    nextUser = ctx.query.sub;
    ctx.body = { ok: true };
    return;
  }
  if (ctx.path === '/_test/rotate' && ctx.method === 'POST') {
    const key = newKey(`k${extra.length + 2}`);
    extra.push(key);
    ctx.body = { kid: key.kid };
    return;
  }
  if (ctx.path === '/_test/sign' && ctx.method === 'POST') {
    const key = [main, ...extra].find((k) => k.kid === (ctx.query.kid || 'main'));
    ctx.body = { token: sign(await body(ctx), key) };
    return;
  }
  if (ctx.path.startsWith('/interaction/')) {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    const accountId = nextUser;
    const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
    grant.addOIDCScope('openid profile email');
    grant.addResourceScope('urn:hermes:api', 'openid profile email');
    const grantId = await grant.save();
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, {
      login: { accountId },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
    ctx.status = 303;
    ctx.redirect(returnTo);
    return;
  }
  await next();
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
