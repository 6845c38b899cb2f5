import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FakeSockets, type FakeWaSocket, fakeSockets } from "./support/fake-wa-socket.js";
import { eventually, startTestGateway, type TestGateway } from "./support/gateway.js";
import { linkWebNumber } from "./support/web-number.js";

// A WhatsApp Web number sends media by link: the gateway fetches the link itself, through the webhooks' SSRF guard
// (the host's addresses checked, the connection pinned to the checked one, no redirects, the kind's cap), and hands
// Baileys the bytes as a stream. The link's server is real HTTPS on 127.0.0.1 under a self-signed certificate for
// media.example.test, which the test's resolver maps to 127.0.0.1 and WEBHOOK_ALLOWED_HOSTS exempts; the fake
// socket reads and encrypts the stream with Baileys' own encryptedStream, as the real socket does before uploading.

const HOST = "media.example.test";
const INTERNAL = "internal.example.test";
let dir: string;
let server: Server;
let port: number;
const files = new Map<string, { body: Buffer; type: string; chunked?: boolean }>();
const requested: string[] = [];
let fake: FakeSockets;
let gw: TestGateway;
let sender: string;
let numberId: string;
let socket: FakeWaSocket;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "wagate-media-link-"));
  execFileSync(
    "openssl",
    [
      ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"],
      ...["-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"), "-days", "1"],
      ...["-subj", `/CN=${HOST}`, "-addext", `subjectAltName=DNS:${HOST},DNS:${INTERNAL}`],
    ],
    { stdio: "ignore" },
  );
  const cert = readFileSync(join(dir, "cert.pem"), "utf8");
  server = createServer({ key: readFileSync(join(dir, "key.pem")), cert }, (req, res) => {
    requested.push(`${req.headers.host}${req.url}`);
    const file = files.get(req.url ?? "");
    if (!file) return void res.writeHead(404).end();
    if (file.chunked) {
      res.writeHead(200, { "content-type": file.type });
      for (let i = 0; i < file.body.length; i += 64 * 1024) res.write(file.body.subarray(i, i + 64 * 1024));
      return void res.end();
    }
    res.writeHead(200, { "content-type": file.type, "content-length": file.body.length }).end(file.body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;

  fake = fakeSockets();
  gw = await startTestGateway(
    { WEB_RECONNECT_BASE_MS: "20", WEB_RECONNECT_MAX_MS: "100", WEBHOOK_ALLOWED_HOSTS: HOST },
    {
      webSocketFactory: fake.factory,
      mediaLinkCa: cert,
      // Both names are this machine; only media.example.test is exempted from the address check.
      resolveHost: async (hostname) =>
        hostname === HOST || hostname === INTERNAL ? [{ address: "127.0.0.1", family: 4 }] : [],
    },
  );
  const admin = await gw.token(["admin"]);
  sender = await gw.token(["messages:send", "messages:read"]);
  ({ numberId, socket } = await linkWebNumber(gw, fake, admin, "14155550700"));
});
afterAll(async () => {
  await gw?.stop();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const link = (path: string, host = HOST) => `https://${host}:${port}${path}`;

async function send(body: Record<string, unknown>) {
  const res = await gw.request("POST", "/v1/messages", {
    token: sender,
    body: { from: numberId, to: "+14155550701", ...body },
  });
  expect(res.status, res.text).toBe(202);
  return eventually(async () => {
    const view = (await gw.request("GET", `/v1/messages/${res.json.id}`, { token: sender })).json;
    return view.status === "queued" ? undefined : view;
  });
}

describe("media from a web number, by link", () => {
  it("fetches the link and hands Baileys its bytes, with the caption, file name and the server's type", async () => {
    const photo = randomBytes(300_000);
    files.set("/shelf.jpg", { body: photo, type: "image/jpeg" });
    const sent = await send({ type: "image", image: { link: link("/shelf.jpg"), caption: "The shelf" } });
    expect(sent).toMatchObject({ status: "sent", error: null });
    const out = socket.sent.find((s) => s.id === sent.provider_message_id);
    expect(out?.medium).toEqual({
      kind: "image",
      sha256: createHash("sha256").update(photo).digest("hex"),
      length: photo.length,
    });
    expect(out?.content).toMatchObject({ caption: "The shelf" });
    expect(requested).toContain(`${HOST}:${port}/shelf.jpg`);

    const pdf = Buffer.concat([Buffer.from("%PDF-1.7\n"), randomBytes(50_000)]);
    files.set("/invoice.pdf", { body: pdf, type: "application/pdf" });
    const doc = await send({
      type: "document",
      document: { link: link("/invoice.pdf"), filename: "invoice.pdf", caption: "Invoice" },
    });
    expect(doc.status).toBe("sent");
    const docOut = socket.sent.find((s) => s.id === doc.provider_message_id);
    expect(docOut?.content).toMatchObject({ mimetype: "application/pdf", fileName: "invoice.pdf" });
    expect(docOut?.medium?.sha256).toBe(createHash("sha256").update(pdf).digest("hex"));
  });

  it("refuses an uploaded medium (id) before queueing: uploads live at Meta", async () => {
    const res = await gw.request("POST", "/v1/messages", {
      token: sender,
      body: { from: numberId, to: "+14155550701", type: "image", image: { id: "1234567890" } },
    });
    expect(res.status).toBe(422);
    expect(res.json.error).toMatchObject({ code: "media_needs_cloud" });
    expect(res.json.error.message).toMatch(/^image\.id: /);
  });

  it("never fetches a link whose host is this machine's network, and fails the message", async () => {
    files.set("/secret", { body: Buffer.from("internal"), type: "image/jpeg" });
    const before = requested.length;
    for (const target of [link("/secret", INTERNAL), `https://127.0.0.1:${port}/secret`]) {
      const failed = await send({ type: "image", image: { link: target } });
      expect(failed).toMatchObject({ status: "failed", error: { code: "media_link_refused" } });
    }
    expect(requested.length).toBe(before);
  });

  it("fails a medium over its kind's cap, announced or streamed, and a link that answers 404", async () => {
    const big = randomBytes(600 * 1024);
    files.set("/big.webp", { body: big, type: "image/webp" });
    files.set("/big-chunked.webp", { body: big, type: "image/webp", chunked: true });
    const announced = await send({ type: "sticker", sticker: { link: link("/big.webp") } });
    expect(announced).toMatchObject({ status: "failed", error: { code: "media_link_refused" } });
    const streamed = await send({ type: "sticker", sticker: { link: link("/big-chunked.webp") } });
    expect(streamed).toMatchObject({ status: "failed", error: { code: "media_too_large" } });
    const missing = await send({ type: "audio", audio: { link: link("/nothing.ogg") } });
    expect(missing).toMatchObject({ status: "failed", error: { code: "media_link_refused" } });
    expect(socket.sent.some((s) => s.medium?.length === big.length)).toBe(false);
  });
});
