import { createHmac } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { renderEdgeIdentityKey } from "../render/edge-identity-key.js";
import { IDENTITY_KEY_FILE } from "../render/edge-js.js";
import { renderGatewayEnvFile } from "../render/gateway-env.js";
import { OPEN_LIMITS, startTestEdge, type TestEdge } from "./fixtures/edge.js";

// An API_SECRET rotation at the edge (issue 14 on the VM): the key file, derived from the gateway's env file as
// the stack derives it, holds the new and the previous secret while the rotation lasts, and the edge lets tokens
// of both through (nginx reloads with the new file before the gateway restarts with the new secret; the gateway
// then refuses the previous key's tokens itself). Reloaded without the previous secret, the edge refuses them.

const CURRENT = "1a2b".repeat(16);
const PREVIOUS = "3c4d".repeat(16);
const UNRELATED = "5e6f".repeat(16);

const envFile = (apiSecret: string, apiSecretPrevious?: string) =>
  renderGatewayEnvFile({ apiSecret, ...(apiSecretPrevious ? { apiSecretPrevious } : {}) });

function token(secret: string): string {
  const part = (v: object) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const unsigned = `${part({ alg: "HS256", typ: "JWT" })}.${part({
    sub: "backend",
    iss: "wagate",
    aud: "wagate",
    exp: now + 600,
    jti: `r-${Math.random().toString(36).slice(2)}`,
  })}`;
  return `Bearer ${unsigned}.${createHmac("sha256", secret).update(unsigned).digest("base64url")}`;
}

let edge: TestEdge;

beforeAll(async () => {
  // The fixture renders the key from an IdentityKey; the rotation's comes from the env file, as on the VM.
  edge = await startTestEdge({
    rateLimit: OPEN_LIMITS,
    identity: JSON.parse(renderEdgeIdentityKey(envFile(CURRENT, PREVIOUS))),
  });
}, 60_000);
afterAll(async () => {
  await edge?.close();
});

const status = async (authorization: string) =>
  (await edge.send({ path: "/v1/messages/abc", headers: { authorization } })).status;

describe("an API_SECRET rotation at the edge", () => {
  it("while API_SECRET_PREVIOUS is set, tokens of both keys pass; another key's do not", async () => {
    expect(await status(token(CURRENT))).toBe(200);
    expect(await status(token(PREVIOUS))).toBe(200);
    expect(await status(token(UNRELATED))).toBe(401);
  });

  it("reloaded with the key file of the rotation's end, the previous key's tokens get the edge's 401", async () => {
    await edge.nginx.reload({ [IDENTITY_KEY_FILE]: renderEdgeIdentityKey(envFile(CURRENT)) });
    expect(await status(token(CURRENT))).toBe(200);
    const before = edge.upstream.received.length;
    expect(await status(token(PREVIOUS))).toBe(401);
    expect(edge.upstream.received.length).toBe(before);
  });
});
