import { createHmac, generateKeyPairSync } from "node:crypto";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { secretKey } from "../src/auth/index.js";
import { startTestGateway, type TestGateway } from "./support/gateway.js";

// Every way a token can be wrong, against a running gateway. All failures must look alike to the client.

const b64url = (value: unknown) =>
  Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

/** HS256 by hand with node:crypto: what any standard JWT library produces, independent of jose. */
function handSigned(
  secret: string,
  payload: Record<string, unknown>,
  header: Record<string, unknown> = { alg: "HS256", typ: "JWT" },
) {
  const input = `${b64url(header)}.${b64url(payload)}`;
  return `${input}.${createHmac("sha256", secret).update(input).digest("base64url")}`;
}

let gw: TestGateway;
const now = () => Math.floor(Date.now() / 1000);
const message = { type: "text", to: "+14155550123", text: { body: "hello" } };

function claims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const t = now();
  return {
    sub: "tester",
    iss: gw.config.JWT_ISSUER,
    aud: gw.config.JWT_AUDIENCE,
    iat: t,
    exp: t + 300,
    jti: `jti-${Math.random()}`,
    scope: "messages:send messages:read",
    ...overrides,
  };
}

const send = (token: string | undefined, headers: Record<string, string> = {}) =>
  gw.request("POST", "/v1/messages", { ...(token ? { token } : {}), body: message, headers });

beforeAll(async () => {
  gw = await startTestGateway();
});
afterAll(async () => {
  await gw?.stop();
});

describe("authentication", () => {
  it("accepts a token minted by the operator command's function", async () => {
    const response = await send(await gw.token(["messages:send"]));
    expect(response.status).toBe(202);
  });

  it("accepts an HS256 token signed by another implementation with the secret's text as key", async () => {
    const response = await send(handSigned(gw.config.API_SECRET, claims()));
    expect(response.status).toBe(202);
  });

  const refusals: Array<[string, () => string | undefined, Record<string, string>?]> = [
    ["no Authorization header", () => undefined],
    ["a non-Bearer scheme", () => "x", { authorization: `Basic ${b64url("a:b")}` }],
    ["garbage instead of a JWT", () => "not-a-jwt"],
    ["alg none", () => `${b64url({ alg: "none", typ: "JWT" })}.${b64url(claims())}.`],
    ["alg none with a signature", () => `${b64url({ alg: "none" })}.${b64url(claims())}.${b64url("sig")}`],
    ["HS512 with the right key", () => "HS512"],
    ["RS256", () => "RS256"],
    ["the wrong key", () => handSigned("f".repeat(64), claims())],
    ["the secret's hex decoded as key", () => "HEXKEY"],
    [
      "an expired token",
      () => handSigned(gw.config.API_SECRET, claims({ exp: now() - 3600, iat: now() - 7200 })),
    ],
    ["a token not yet valid", () => handSigned(gw.config.API_SECRET, claims({ nbf: now() + 3600 }))],
    ["the wrong audience", () => handSigned(gw.config.API_SECRET, claims({ aud: "someone-else" }))],
    ["the wrong issuer", () => handSigned(gw.config.API_SECRET, claims({ iss: "someone-else" }))],
    ["no exp", () => handSigned(gw.config.API_SECRET, claims({ exp: undefined }))],
    ["no aud", () => handSigned(gw.config.API_SECRET, claims({ aud: undefined }))],
    ["no iss", () => handSigned(gw.config.API_SECRET, claims({ iss: undefined }))],
    ["no jti", () => handSigned(gw.config.API_SECRET, claims({ jti: undefined }))],
    [
      "a tampered payload",
      () => {
        const [h, , s] = handSigned(gw.config.API_SECRET, claims()).split(".");
        return `${h}.${b64url(claims({ scope: "admin messages:send" }))}.${s}`;
      },
    ],
  ];

  it.each(refusals)("refuses %s with the same 401", async (_name, make, headers) => {
    let token = make();
    if (token === "HS512") {
      token = await new SignJWT(claims())
        .setProtectedHeader({ alg: "HS512" })
        .sign(secretKey(gw.config.API_SECRET));
    } else if (token === "RS256") {
      const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
      token = await new SignJWT(claims()).setProtectedHeader({ alg: "RS256" }).sign(privateKey);
    } else if (token === "HEXKEY") {
      token = await new SignJWT(claims())
        .setProtectedHeader({ alg: "HS256" })
        .sign(Buffer.from(gw.config.API_SECRET, "hex"));
    }
    const response = await send(headers ? undefined : token, headers ?? {});
    expect(response.status).toBe(401);
    expect(response.json).toEqual({
      error: { code: "unauthorized", message: "missing or invalid credentials" },
    });
  });

  it("tolerates a small clock skew but not more", async () => {
    const skewed = handSigned(gw.config.API_SECRET, claims({ exp: now() - 5, iat: now() - 60 }));
    expect((await send(skewed)).status).toBe(202);
    const tooOld = handSigned(
      gw.config.API_SECRET,
      claims({ exp: now() - gw.config.JWT_CLOCK_TOLERANCE_SECONDS - 5, iat: now() - 600 }),
    );
    expect((await send(tooOld)).status).toBe(401);
  });

  it("answers 403 to a valid token without the route's scope", async () => {
    const response = await send(await gw.token(["messages:read", "otp"]));
    expect(response.status).toBe(403);
    expect(response.json.error.code).toBe("forbidden");
    const noScope = await send(handSigned(gw.config.API_SECRET, claims({ scope: undefined })));
    expect(noScope.status).toBe(403);
    const readOnly = await gw.request("GET", "/v1/messages/6f1c4a52-44cf-4b55-a34b-5a1b7a0e3b0c", {
      token: await gw.token(["messages:send"]),
    });
    expect(readOnly.status).toBe(403);
  });

  it("refuses a revoked token id, revoked through the admin route", async () => {
    const victim = await gw.token(["messages:send"], { jti: "to-be-revoked" });
    expect((await send(victim)).status).toBe(202);
    const admin = await gw.token(["admin"]);
    const notAdmin = await gw.request("POST", "/v1/admin/revocations", {
      token: victim,
      body: { jti: "to-be-revoked" },
    });
    expect(notAdmin.status).toBe(403);
    const revoked = await gw.request("POST", "/v1/admin/revocations", {
      token: admin,
      body: { jti: "to-be-revoked" },
    });
    expect(revoked.status).toBe(201);
    const after = await send(victim);
    expect(after.status).toBe(401);
    expect(after.json.error.code).toBe("unauthorized");
  });

  it("refuses a token id revoked directly in the store", async () => {
    const token = await gw.token(["messages:send"], { jti: "revoked-in-store" });
    await gw.gateway.store.revokeToken("revoked-in-store", Date.now());
    expect((await send(token)).status).toBe(401);
  });

  it("checks the token before reading the body", async () => {
    const response = await gw.request("POST", "/v1/messages", { body: "{not json" });
    expect(response.status).toBe(401);
  });
});
