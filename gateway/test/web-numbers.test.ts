import { readFileSync } from "node:fs";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GatewayEvent } from "../src/events.js";
import { DISCONNECT, type FakeSockets, type FakeWaSocket, fakeSockets } from "./support/fake-wa-socket.js";
import { eventually, startTestGateway, type TestGateway } from "./support/gateway.js";

// WhatsApp Web numbers against a fake socket that emits Baileys' real event shapes: linking (QR and pairing
// code, every authorization case), the sealed session, inbound messages and receipts, reconnection, logout.

let fake: FakeSockets;
let gw: TestGateway;
let admin: string;
let sender: string;
const published: GatewayEvent[] = [];

beforeAll(async () => {
  fake = fakeSockets();
  gw = await startTestGateway(
    {
      WEB_RECONNECT_BASE_MS: "20",
      WEB_RECONNECT_MAX_MS: "100",
      WEB_UNLINKED_WAIT_SECONDS: "0",
      WEB_BROADCAST_MIN_SECONDS: "1",
      WEB_BROADCAST_MAX_SECONDS: "1",
      OUTBOX_BACKOFF_BASE_MS: "20",
      OUTBOX_BACKOFF_MAX_MS: "100",
    },
    { webSocketFactory: fake.factory, events: { publish: async (e) => void published.push(e) } },
  );
  admin = await gw.token(["admin"]);
  sender = await gw.token(["messages:send", "messages:read", "otp", "replies", "broadcasts"]);
});
afterAll(async () => {
  await gw?.stop();
});

function query<T>(sql: string, ...args: unknown[]): T[] {
  const db = new Database(gw.config.DATABASE_PATH, { readonly: true });
  try {
    return db.prepare(sql).all(...args) as T[];
  } finally {
    db.close();
  }
}
const status = async (id: string) =>
  (await gw.request("GET", `/v1/numbers/${id}`, { token: admin })).json.status;
const link = (id: string, body: unknown, token = admin) =>
  gw.request("POST", `/v1/numbers/${id}/link`, { token, body });
async function webNumber(name: string): Promise<string> {
  const res = await gw.request("POST", "/v1/numbers", { token: admin, body: { name, transport: "web" } });
  expect(res.status).toBe(201);
  return res.json.id;
}

/** Links a number by QR as a phone would: the QR, the scan, the restart, the open connection. */
async function linked(name: string, phone: string): Promise<{ id: string; socket: FakeWaSocket }> {
  const id = await webNumber(name);
  const first = fake.sockets.length;
  const answer = link(id, { method: "qr" });
  const socket = await fake.opened(first);
  socket.qr();
  expect((await answer).status).toBe(202);
  await socket.auth.keys.set({
    "pre-key": { "1": { public: Buffer.alloc(32, 7), private: Buffer.alloc(32, 9) } },
  });
  socket.paired(phone);
  const resumed = await fake.opened(first + 1);
  resumed.open(phone);
  await eventually(async () => ((await status(id)) === "connected" ? true : undefined));
  return { id, socket: resumed };
}

let sales: { id: string; socket: FakeWaSocket };

describe("linking a web number (scope admin)", () => {
  it("answers a QR code as its payload and a PNG data URL, then links when the phone scans it", async () => {
    const id = await webNumber("sales");
    const first = fake.sockets.length;
    const pending = link(id, { method: "qr" });
    const socket = await fake.opened(first);
    const qr = socket.qr();
    const res = await pending;
    expect(res.status).toBe(202);
    expect(res.json).toMatchObject({ number_id: id, status: "linking", method: "qr", qr });
    expect(res.json.qr_png).toMatch(/^data:image\/png;base64,[A-Za-z0-9+/=]{100,}$/);
    expect(Date.parse(res.json.expires_at) - Date.now()).toBeLessThanOrEqual(60_000);
    expect(await status(id)).toBe("linking");

    // A second attempt while this one lives: 409 naming the number.
    const second = await link(id, { method: "qr" });
    expect(second.status).toBe(409);
    expect(second.json.error).toMatchObject({ code: "link_in_progress" });
    expect(second.json.error.message).toMatch(/^id:/);

    // Baileys writes keys through the sealed auth state while linking, and new credentials on pairing.
    await socket.auth.keys.set({
      "pre-key": { "1": { public: Buffer.alloc(32, 1), private: Buffer.alloc(32, 0xab) } },
      session: { "14155550999.0": Buffer.from("signal-session-record-bytes") },
    });
    socket.paired("14155550999");
    const resumed = await fake.opened(first + 1);
    // The reconnection after the 515 uses the credentials the pairing stored.
    expect(resumed.auth.creds.me?.id).toBe("14155550999:7@s.whatsapp.net");
    resumed.open("14155550999");
    await eventually(async () => ((await status(id)) === "connected" ? true : undefined));
    const view = (await gw.request("GET", `/v1/numbers/${id}`, { token: admin })).json;
    expect(view.phone).toBe("+14155550999");
    expect(view.last_connected_at).not.toBeNull();
    // The event follows the status's commit: it may land a moment after the status reads "connected".
    const linked = await eventually(async () =>
      published.find((e) => e.type === "number.linked" && e.data.number_id === id),
    );
    expect(linked.data.phone).toBe("+14155550999");
    expect(gw.logs()).toContain("audit: number linked");
    sales = { id, socket: resumed };

    const again = await link(id, { method: "qr" });
    expect(again.status).toBe(409);
    expect(again.json.error.code).toBe("already_linked");
  });

  it("answers an 8-character pairing code for {method: code, phone}", async () => {
    const id = await webNumber("support-code");
    const first = fake.sockets.length;
    const pending = link(id, { method: "code", phone: "+14155550888" });
    const socket = await fake.opened(first);
    socket.qr();
    const res = await pending;
    expect(res.status).toBe(202);
    expect(res.json).toMatchObject({ method: "code", code: "K7QW3MZP" });
    expect(res.json.code).toMatch(/^[A-Z0-9]{8}$/);
    expect(socket.pairingRequests).toEqual(["14155550888"]);
  });

  it("answers within seconds with a JSON error when WhatsApp cannot be reached, and stays up", async () => {
    const id = await webNumber("offline");
    const first = fake.sockets.length;
    const started = Date.now();
    const pending = link(id, { method: "qr" });
    (await fake.opened(first)).close(DISCONNECT.connectionClosed);
    const res = await pending;
    expect(res.status).toBe(503);
    expect(res.json.error.code).toBe("link_unavailable");
    expect(Date.now() - started).toBeLessThan(5000);
    await eventually(async () => ((await status(id)) === "unlinked" ? true : undefined));
    expect((await gw.request("GET", "/healthz")).status).toBe(200);
  });

  it.each([
    ["a cloud number", "transport"],
    ["the default number", "id"],
  ])("refuses to link %s with a JSON 4xx naming %s", async (which, field) => {
    let id = "default";
    if (which === "a cloud number") {
      const res = await gw.request("POST", "/v1/numbers", {
        token: admin,
        body: {
          name: "meta",
          transport: "cloud",
          cloud: { phone_number_id: "200000000000009", access_token: "EAAG-0123456789abcdef" },
        },
      });
      id = res.json.id;
    }
    const res = await link(id, { method: "qr" });
    expect(res.status).toBe(422);
    expect(res.json.error.message).toMatch(new RegExp(`^${field}:`));
  });

  it("refuses malformed link requests naming the field, other scopes and anonymous callers", async () => {
    const id = await webNumber("guarded");
    const badMethod = await link(id, { method: "telepathy" });
    expect(badMethod.status).toBe(400);
    expect(badMethod.json.error.message).toContain("method");
    const noPhone = await link(id, { method: "code" });
    expect(noPhone.status).toBe(400);
    expect(noPhone.json.error.message).toContain("phone");
    const badPhone = await link(id, { method: "code", phone: "0800" });
    expect(badPhone.json.error.message).toContain("phone");
    expect((await link(id, { method: "qr" }, sender)).status).toBe(403);
    expect((await gw.request("POST", `/v1/numbers/${id}/link`, { body: { method: "qr" } })).status).toBe(401);
    expect((await link("0190a0b0-0000-7000-8000-0000000000ff", { method: "qr" })).status).toBe(404);
    expect(await status(id)).toBe("unlinked");
  });
});

describe("a linked web number", () => {
  it("sends text through the outbox; receipts become delivered and read, with the number in the events", async () => {
    const sent = await gw.request("POST", "/v1/messages", {
      token: sender,
      body: { type: "text", from: sales.id, to: "+14155550123", text: { body: "Your order shipped" } },
    });
    expect(sent.status).toBe(202);
    const out = await eventually(async () => sales.socket.sent.find((s) => s.text === "Your order shipped"));
    expect(out.jid).toBe("14155550123@s.whatsapp.net");
    await eventually(async () => {
      const m = (await gw.request("GET", `/v1/messages/${sent.json.id}`, { token: sender })).json;
      return m.status === "sent" ? m : undefined;
    });
    sales.socket.receipt(out.id, "14155550123", 3);
    sales.socket.receipt(out.id, "14155550123", 4);
    await eventually(async () => {
      const m = (await gw.request("GET", `/v1/messages/${sent.json.id}`, { token: sender })).json;
      return m.status === "read" ? m : undefined;
    });
    // The events are published once each status is committed: the status may be seen a moment before them.
    const events = await eventually(async () => {
      const found = published.filter(
        (e) => e.type === "message.status" && e.data.message_id === sent.json.id,
      );
      return found.length >= 2 ? found : undefined;
    });
    expect(events.map((e) => e.data.status)).toEqual(["delivered", "read"]);
    expect(events.every((e) => e.data.number_id === sales.id)).toBe(true);
  });

  it("sends OTP codes as plain text and keeps no code once sent", async () => {
    const otp = await gw.request("POST", "/v1/otp", {
      token: sender,
      body: { to: "+14155550177", from: sales.id },
    });
    expect(otp.status).toBe(202);
    const out = await eventually(async () => sales.socket.sent.find((s) => s.jid.startsWith("14155550177")));
    expect(out.text).toMatch(/^[0-9]{6} is your verification code\.$/);
    await eventually(async () =>
      query<{ secret: Buffer | null }>("SELECT secret FROM messages WHERE id = ?", otp.json.message_id)[0]
        ?.secret === null
        ? true
        : undefined,
    );
  });

  it("commits every inbound message once per id, live or synced, and replies from the same number", async () => {
    const rule = await gw.request("POST", "/v1/replies", {
      token: sender,
      body: { match: "exact", pattern: "opening hours", reply: { type: "text", text: "9 to 5" } },
    });
    expect(rule.status).toBe(201);
    sales.socket.inbound([{ id: "3A0000000000000001", from: "14155550111", text: "opening hours" }]);
    // The same message again, as the offline sync after a reconnection hands it over.
    sales.socket.inbound(
      [{ id: "3A0000000000000001", from: "14155550111", text: "opening hours" }],
      "append",
    );
    const reply = await eventually(async () => sales.socket.sent.find((s) => s.text === "9 to 5"));
    expect(reply.jid).toBe("14155550111@s.whatsapp.net");
    await eventually(async () =>
      query<{ n: number }>("SELECT COUNT(*) AS n FROM inbound_messages WHERE processed_at IS NULL")[0]?.n ===
      0
        ? true
        : undefined,
    );
    const rows = query<{ number_id: string; sender: string }>(
      "SELECT number_id, sender FROM inbound_messages WHERE id = '3A0000000000000001'",
    );
    expect(rows).toEqual([{ number_id: sales.id, sender: "+14155550111" }]);
    await new Promise((r) => setTimeout(r, 200));
    expect(sales.socket.sent.filter((s) => s.text === "9 to 5")).toHaveLength(1);
    const received = published.filter((e) => e.dedupeKey === "message.received:3A0000000000000001");
    expect(received[0]?.data).toMatchObject({
      number_id: sales.id,
      from: "+14155550111",
      text: "opening hours",
    });
  });

  it("refuses a template from a web number and offers text broadcasts with its ban-aware pace", async () => {
    const template = await gw.request("POST", "/v1/broadcasts", {
      token: sender,
      body: { from: sales.id, template: { name: "promo", language: "en_US" }, recipients: ["+14155550123"] },
    });
    expect(template.status).toBe(422);
    expect(template.json.error).toEqual({
      code: "template_needs_cloud",
      message: "type: templates are sent by cloud numbers only; from names a web number",
    });
    const text = await gw.request("POST", "/v1/broadcasts", {
      token: sender,
      body: {
        from: sales.id,
        text: { body: "Sale today" },
        only_known_contacts: true,
        recipients: ["+14155550111", "+14155550112"],
      },
    });
    expect(text.status).toBe(202);
    // +14155550111 wrote to this number before; +14155550112 never did and is left out.
    const out = await eventually(async () => sales.socket.sent.find((s) => s.text === "Sale today"));
    expect(out.jid).toBe("14155550111@s.whatsapp.net");
    const view = await eventually(async () => {
      const b = (await gw.request("GET", `/v1/broadcasts/${text.json.id}`, { token: sender })).json;
      return b.not_sent === 1 && b.sent === 1 ? b : undefined;
    });
    expect(view.from).toBe(sales.id);
    const completed = await eventually(async () =>
      published.find((e) => e.type === "broadcast.completed" && e.data.id === text.json.id),
    );
    expect(completed.data.number_id).toBe(sales.id);
  });

  it("keeps its session only sealed: no key bytes in the database files or the logs", async () => {
    await gw.gateway.store.ping();
    const creds = sales.socket.auth.creds;
    const secrets = [
      creds.noiseKey.private,
      creds.signedIdentityKey.private,
      creds.signedPreKey.keyPair.private,
      Buffer.from(creds.advSecretKey, "base64"),
      Buffer.alloc(32, 0xab),
    ].map((k) => Buffer.from(k));
    const keyCount = query<{ n: number }>(
      "SELECT COUNT(*) AS n FROM number_session_keys WHERE number_id = ?",
      sales.id,
    )[0]?.n;
    expect(keyCount).toBeGreaterThanOrEqual(2);
    for (const file of [gw.config.DATABASE_PATH, `${gw.config.DATABASE_PATH}-wal`]) {
      let bytes: Buffer;
      try {
        bytes = readFileSync(file);
      } catch {
        continue;
      }
      for (const secret of secrets) {
        expect(bytes.includes(secret)).toBe(false);
        expect(bytes.includes(Buffer.from(secret.toString("base64")))).toBe(false);
      }
      expect(bytes.includes(Buffer.from("signal-session-record-bytes"))).toBe(false);
    }
    for (const secret of secrets) expect(gw.logs()).not.toContain(secret.toString("base64"));
  });

  it("reconnects after a lost connection, with backoff", async () => {
    const before = fake.sockets.length;
    sales.socket.close(DISCONNECT.connectionLost);
    await eventually(async () => ((await status(sales.id)) === "disconnected" ? true : undefined));
    const again = await fake.opened(before);
    again.open("14155550999");
    await eventually(async () => ((await status(sales.id)) === "connected" ? true : undefined));
    sales = { ...sales, socket: again };
  });

  it("logged out by the phone: unlinked, session wiped, event, and its queued messages fail with number_unlinked", async () => {
    const before = fake.sockets.length;
    sales.socket.close(DISCONNECT.connectionLost);
    await eventually(async () => ((await status(sales.id)) === "disconnected" ? true : undefined));
    // Accepted while the socket is down: it waits in the outbox.
    const queued = await gw.request("POST", "/v1/messages", {
      token: sender,
      body: { type: "text", from: sales.id, to: "+14155550123", text: { body: "waiting" } },
    });
    expect(queued.status).toBe(202);
    const reconnecting = await fake.opened(before);
    reconnecting.close(DISCONNECT.loggedOut);
    await eventually(async () => ((await status(sales.id)) === "unlinked" ? true : undefined));
    expect(
      query<{ n: number }>("SELECT COUNT(*) AS n FROM number_session_keys WHERE number_id = ?", sales.id)[0]
        ?.n,
    ).toBe(0);
    const unlinkedEvent = await eventually(async () =>
      published.find((e) => e.type === "number.unlinked" && e.data.number_id === sales.id),
    );
    expect(unlinkedEvent.data.reason).toBe("logged_out");
    const failed = await eventually(async () => {
      const m = (await gw.request("GET", `/v1/messages/${queued.json.id}`, { token: sender })).json;
      return m.status === "failed" ? m : undefined;
    });
    expect(failed.error.code).toBe("number_unlinked");
    const refused = await gw.request("POST", "/v1/messages", {
      token: sender,
      body: { type: "text", from: sales.id, to: "+14155550123", text: { body: "x" } },
    });
    expect(refused.status).toBe(422);
    expect(refused.json.error.message).toMatch(/^from:/);
  });

  it("deleting a linked number logs its session out and wipes it", async () => {
    const other = await linked("deleted-later", "14155550777");
    const res = await gw.request("DELETE", `/v1/numbers/${other.id}`, { token: admin });
    expect(res.status).toBe(204);
    expect(other.socket.loggedOut).toBe(true);
    expect(
      query<{ n: number }>("SELECT COUNT(*) AS n FROM number_session_keys WHERE number_id = ?", other.id)[0]
        ?.n,
    ).toBe(0);
    const unlinked = published.filter((e) => e.type === "number.unlinked" && e.data.number_id === other.id);
    expect(unlinked.map((e) => e.data.reason)).toEqual(["deleted"]);
  });
});
