import { createHmac, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createSealer } from "../src/crypto/sealer.js";
import { uuidv7 } from "../src/ids.js";
import { openSqliteStore } from "../src/store/sqlite.js";
import { eventually, startTestGateway, type TestGateway } from "./support/gateway.js";
import { startWebhookReceiver, type WebhookReceiver } from "./support/webhook-receiver.js";

// Rotating API_SECRET with API_SECRET_PREVIOUS set for one deploy: tokens signed with the old secret stop at
// once, while what the gateway sealed or hashed under it (webhook signing secrets, pending OTP codes) keeps
// working, and is moved under the new secret so the previous one can then be dropped.

const dir = mkdtempSync(join(tmpdir(), "wagate-rotation-"));
const oldSecret = randomBytes(32).toString("hex");
const newSecret = randomBytes(32).toString("hex");
let receiver: WebhookReceiver;
const running: TestGateway[] = [];

afterAll(async () => {
  for (const g of running) await g.stop();
  await receiver?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function gatewayWith(env: Record<string, string>): Promise<TestGateway> {
  const g = await startTestGateway({
    DATABASE_PATH: join(dir, "wagate.db"),
    SANDBOX_OUTBOX_PATH: join(dir, "sandbox-outbox.jsonl"),
    WEBHOOK_ALLOW_HTTP: "true",
    WEBHOOK_ALLOWED_HOSTS: "127.0.0.1",
    WEBHOOK_POLL_INTERVAL_MS: "20",
    ...env,
  });
  running.push(g);
  return g;
}

async function stop(g: TestGateway): Promise<void> {
  running.splice(running.indexOf(g), 1);
  await g.stop();
}

/** The code the sandbox "sent" in this message. */
function sentCode(messageId: string): Promise<string> {
  return eventually(async () => {
    const lines = readFileSync(join(dir, "sandbox-outbox.jsonl"), "utf8").split("\n").filter(Boolean);
    const line = lines.map((l) => JSON.parse(l)).find((l) => l.messageId === messageId);
    return line?.template.components[0].parameters[0].text as string | undefined;
  });
}

/** The receiver's side, from the documented scheme only. */
function signedWith(secret: string, header: string | string[] | undefined, rawBody: string): boolean {
  const parts = Object.fromEntries(
    String(header)
      .split(",")
      .map((p) => p.split("=", 2) as [string, string]),
  );
  return createHmac("sha256", secret).update(`${parts.t}.${rawBody}`).digest("hex") === parts.v1;
}

describe("API_SECRET rotation", () => {
  it("keeps webhook secrets and pending OTP codes, refuses old tokens, and needs the old secret only once", async () => {
    receiver = await startWebhookReceiver();
    const before = await gatewayWith({ API_SECRET: oldSecret });
    const oldToken = await before.token(["otp", "webhooks"]);
    const subscribed = await before.request("POST", "/v1/webhooks", {
      token: oldToken,
      body: { url: receiver.url, events: ["otp.verified"] },
    });
    expect(subscribed.status).toBe(201);
    const signingSecret = subscribed.json.secret as string;
    const issued = await before.request("POST", "/v1/otp", { token: oldToken, body: { to: "+14155550101" } });
    expect(issued.status).toBe(202);
    const code = await sentCode(issued.json.message_id ?? issued.json.messageId);
    await stop(before);

    const rotating = await gatewayWith({ API_SECRET: newSecret, API_SECRET_PREVIOUS: oldSecret });
    expect(rotating.logs()).toMatch(/"resealed":1,"unopenable":0/);
    expect((await rotating.request("GET", "/v1/webhooks", { token: oldToken })).status).toBe(401);
    const newToken = await rotating.token(["otp", "webhooks"]);
    // The code was hashed under the old secret: it still verifies while the previous secret is set.
    const verified = await rotating.request("POST", "/v1/otp/verify", {
      token: newToken,
      body: { to: "+14155550101", code },
    });
    expect(verified.status, verified.text).toBe(200);
    const first = await eventually(async () => receiver.received[0]);
    expect(signedWith(signingSecret, first.headers["x-wagate-signature"], first.rawBody)).toBe(true);
    await stop(rotating);

    // The previous secret is gone: the webhook secret was moved under the new one and still signs.
    const after = await gatewayWith({ API_SECRET: newSecret });
    const again = await after.request("POST", "/v1/otp", { token: newToken, body: { to: "+14155550102" } });
    expect(again.status).toBe(202);
    const secondCode = await sentCode(again.json.message_id ?? again.json.messageId);
    expect(
      (
        await after.request("POST", "/v1/otp/verify", {
          token: newToken,
          body: { to: "+14155550102", code: secondCode },
        })
      ).status,
    ).toBe(200);
    const second = await eventually(async () => receiver.received[1]);
    expect(signedWith(signingSecret, second.headers["x-wagate-signature"], second.rawBody)).toBe(true);
  });

  it("moves an OTP code still waiting to be sent under the new secret", async () => {
    const path = join(dir, "pending.db");
    const store = openSqliteStore(path);
    const id = uuidv7();
    const sealedOld = createSealer(oldSecret).seal("123456", id);
    await store.enqueueMessage({
      id,
      subject: "s",
      kind: "otp",
      message: { type: "text", to: "+14155550103", text: { body: "code" } },
      secret: sealedOld,
      priority: 0,
      createdAt: Date.now(),
    });
    const rotating = createSealer(newSecret, oldSecret);
    const moved = await store.resealSecrets((owner, sealed) => rotating.reseal(sealed, owner.id));
    expect(moved).toEqual({ resealed: 1, unopenable: 0 });
    // A second pass finds nothing left under the old secret.
    expect(await store.resealSecrets((owner, sealed) => rotating.reseal(sealed, owner.id))).toEqual({
      resealed: 0,
      unopenable: 0,
    });
    const stored = (await store.getMessage(id))?.secret as Buffer;
    expect(createSealer(newSecret).open(stored, id)).toBe("123456");
    expect(() => createSealer(oldSecret).open(stored, id)).toThrow();
    // A value sealed under a secret older still opens under neither: left as it is, counted.
    const olderId = uuidv7();
    const sealedOlder = createSealer(randomBytes(32).toString("hex")).seal("654321", olderId);
    await store.enqueueMessage({
      id: olderId,
      subject: "s",
      kind: "otp",
      message: { type: "text", to: "+14155550104", text: { body: "code" } },
      secret: sealedOlder,
      priority: 0,
      createdAt: Date.now(),
    });
    expect(await store.resealSecrets((owner, sealed) => rotating.reseal(sealed, owner.id))).toEqual({
      resealed: 0,
      unopenable: 1,
    });
    expect((await store.getMessage(olderId))?.secret).toEqual(sealedOlder);
    await store.close();
  });
});
