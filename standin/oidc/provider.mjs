// A real OpenID Connect provider on loopback (node oidc-provider), standing in for Cognito in
// ./scripts/dev and the page's sign-in tests: any login and password sign in.
// Usage: node provider.mjs PORT REDIRECT_URI  (prints "ready" once it listens)
import Provider from "oidc-provider";

const [port, redirectUri] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: "relay-page",
      // A public client, as the page is: no secret, so PKCE is required.
      token_endpoint_auth_method: "none",
      application_type: "native",
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      redirect_uris: [redirectUri],
      post_logout_redirect_uris: [redirectUri],
    },
  ],
  // Any login works (the built-in development login page); each user gets an email claim.
  async findAccount(_ctx, sub) {
    return { accountId: sub, claims: async () => ({ sub, email: `${sub}@example.test` }) };
  },
  claims: { openid: ["sub"], email: ["email"], profile: ["name"] },
  // As Cognito does: the scopes' claims in the id token itself, not only at userinfo.
  conformIdTokenClaims: false,
  // As Cognito does: a refresh token with every code, and short-lived id tokens.
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed("refresh_token"),
  // As Cognito does: a refresh answers with new id and access tokens, not a new refresh token.
  rotateRefreshToken: () => false,
  ttl: { IdToken: 30, AccessToken: 30, RefreshToken: 3600, Session: 3600, Grant: 3600, Interaction: 600 },
  features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
  pkce: { required: () => true },
});
provider.proxy = false;
provider.listen(Number(port), "127.0.0.1", () => console.log("ready"));
