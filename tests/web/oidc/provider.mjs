// A real OpenID Connect provider for the sign-in tests: panva's oidc-provider (OpenID
// Certified), with one confidential client, two accounts and a login step that the test
// drives over plain HTTP (no browser): GET /interaction/<uid> shows a form, POST
// /interaction/<uid>/login with login=<account> signs that account in; consent is granted
// by itself. Configured by one JSON argument:
//   {"port": 0, "client_id": "...", "client_secret": "...", "redirect_uri": "..."}
// Prints "listening <issuer>" on stdout when ready.
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const { port, client_id, client_secret, redirect_uri } = JSON.parse(process.argv[2]);
const issuer = `http://127.0.0.1:${port}`;

// alice is in the administrators' group, bob is not.
const ACCOUNTS = {
  alice: { email: 'alice@example.com', preferred_username: 'alice', groups: ['emaillog-admins', 'sales'] },
  bob: { email: 'bob@example.com', preferred_username: 'bob', groups: ['sales'] },
};

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-1', use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  clients: [{
    client_id,
    client_secret,
    redirect_uris: [redirect_uri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  jwks: { keys: [signingKey] },
  cookies: { keys: ['only-for-tests'] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'groups'],
  },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    if (!ACCOUNTS[id]) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, email_verified: true, ...ACCOUNTS[id] }) };
  },
});

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

async function login(ctx, details) {
  if (ctx.method === 'GET') {
    ctx.type = 'html';
    ctx.body = `<form method="post" action="/interaction/${details.uid}/login">`
      + '<input name="login"><button>Sign in</button></form>';
    return undefined;
  }
  const account = (await readForm(ctx.req)).get('login');
  if (!ACCOUNTS[account]) {
    ctx.status = 400;
    ctx.body = 'unknown account';
    return undefined;
  }
  return { login: { accountId: account } };
}

async function consent(details) {
  const { prompt: { details: missing }, params, session } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  return { consent: { grantId: await grant.save() } };
}

provider.use(async (ctx, next) => {
  if (!/^\/interaction\/[^/]+(\/login)?$/.test(ctx.path)) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const result = details.prompt.name === 'login' ? await login(ctx, details) : await consent(details);
  if (!result) return undefined;
  const redirectTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: true });
  ctx.redirect(redirectTo);
  ctx.status = 303;
  return undefined;
});

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
