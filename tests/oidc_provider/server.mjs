// An independent OpenID Provider for the tests: panva/oidc-provider (OpenID Certified), not our emulator.
// Usage: node server.mjs CONFIG.json  — CONFIG: {"port", "clients": [{client_id, client_secret, redirect_uris}]}.
// Prints one line `ready <issuer>` once it listens on 127.0.0.1:<port>; any login and password sign in
// (the provider's own development interactions), so a test's browser can drive it like a person.
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import Provider from "oidc-provider";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const issuer = `http://127.0.0.1:${config.port}`;
const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: "jwk" }), kid: "test-" + randomBytes(4).toString("hex"), use: "sig", alg: "RS256" };

const provider = new Provider(issuer, {
  clients: config.clients.map((client) => ({
    ...client,
    grant_types: ["authorization_code"],
    response_types: ["code"],
    token_endpoint_auth_method: "client_secret_basic",
  })),
  jwks: { keys: [jwk] },
  cookies: { keys: [randomBytes(32).toString("hex")] },
  pkce: { required: () => true },
  claims: { openid: ["sub"], profile: ["name", "preferred_username"] },
  findAccount: async (_ctx, sub) => ({
    accountId: sub,
    claims: async () => ({ sub, name: sub, preferred_username: sub }),
  }),
  ttl: { IdToken: 3600, AccessToken: 3600, AuthorizationCode: 60, Interaction: 600, Session: 3600, Grant: 3600 },
});
provider.on("server_error", (_ctx, error) => console.error("server_error", error));

provider.listen(config.port, "127.0.0.1", () => console.log(`ready ${issuer}`));
