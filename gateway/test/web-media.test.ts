import { createHash, randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSealer } from "../src/crypto/sealer.js";
import { openWebMediaSource } from "../src/media/web-media.js";
import { sealedOwnerAssociatedData } from "../src/numbers/sealing.js";
import { type FakeWaMedia, startFakeWaMedia, type WebMediaType } from "./support/fake-wa-media.js";
import { type FakeSockets, type FakeWaSocket, fakeSockets } from "./support/fake-wa-socket.js";
import { eventually, startTestGateway, type TestGateway } from "./support/gateway.js";
import { linkWebNumber } from "./support/web-number.js";

// A WhatsApp Web number's inbound media through the same routes as Meta's: the message lists the medium's id, and
// GET /v1/media/:id fetches the file from WhatsApp's media servers (a local server here, real HTTP, files encrypted
// with Baileys' own media encryption) and streams it decrypted by Baileys' helper. The media key, path and URL are
// sealed at rest and never in the logs or answers.

let fake: FakeSockets;
let media: FakeWaMedia;
let gw: TestGateway;
let inbox: string;
let numberId: string;
let socket: FakeWaSocket;

beforeAll(async () => {
  fake = fakeSockets();
  media = await startFakeWaMedia();
  gw = await startTestGateway(
    { WEB_RECONNECT_BASE_MS: "20", WEB_RECONNECT_MAX_MS: "100" },
    { webSocketFactory: fake.factory, webMediaOrigin: media.origin },
  );
  const admin = await gw.token(["admin"]);
  inbox = await gw.token(["inbox"]);
  ({ numberId, socket } = await linkWebNumber(gw, fake, admin, "14155550800"));
});
afterAll(async () => {
  await gw?.stop();
  await media?.close();
});

const CUSTOMER = "14155550801";

const KINDS: Array<{ type: WebMediaType; key: string; mime: string; extra: Record<string, unknown> }> = [
  { type: "image", key: "imageMessage", mime: "image/jpeg", extra: { caption: "The shelf" } },
  { type: "video", key: "videoMessage", mime: "video/mp4", extra: {} },
  { type: "audio", key: "audioMessage", mime: "audio/ogg; codecs=opus", extra: { ptt: true } },
  { type: "document", key: "documentMessage", mime: "application/pdf", extra: { fileName: "invoice.pdf" } },
  { type: "sticker", key: "stickerMessage", mime: "image/webp", extra: {} },
];

/** One medium sent by the customer to the web number; resolves with its plain bytes and the fields sent. */
async function receive(id: string, kind: (typeof KINDS)[number], plain = randomBytes(40_000 + 7)) {
  const { fields } = await media.media(plain, kind.type);
  socket.inboundContent([
    { id, from: CUSTOMER, message: { [kind.key]: { mimetype: kind.mime, ...fields, ...kind.extra } } },
  ]);
  await eventually(async () =>
    (
      await gw.request("GET", `/v1/messages?number=${numberId}&limit=100`, { token: inbox })
    ).json.messages.some((m: { id: string }) => m.id === id)
      ? true
      : undefined,
  );
  return { plain, fields };
}

const errorCode = async (res: Response) => ((await res.json()) as { error: { code: string } }).error.code;

const fetchMedium = (id: string) =>
  fetch(`${gw.url}/v1/media/${id}`, { headers: { authorization: `Bearer ${inbox}` } });

describe("a web number's inbound media", () => {
  it("streams each kind decrypted, with its type and length, from the medium id the inbox lists", async () => {
    for (const kind of KINDS) {
      const id = `3EB0MEDIA${kind.type.toUpperCase()}`;
      const { plain, fields } = await receive(id, kind);
      const [listed] = (
        await gw.request("GET", "/v1/messages?contact=%2B14155550801&limit=1", { token: inbox })
      ).json.messages;
      expect(listed[kind.type]).toMatchObject({
        id,
        mime_type: kind.mime,
        sha256: createHash("sha256").update(plain).digest("base64"),
      });
      const before = media.requested.length;
      const res = await fetchMedium(id);
      expect(res.status, `${kind.type}: ${res.status}`).toBe(200);
      expect(res.headers.get("content-type")).toBe(kind.mime);
      expect(res.headers.get("content-length")).toBe(String(plain.length));
      expect(Buffer.from(await res.arrayBuffer()).equals(plain)).toBe(true);
      // Fetched from where the message said, on the media server (the direct path, not another host).
      expect(media.requested.slice(before)).toEqual([fields.directPath]);
    }
  });

  it("keeps what fetches a medium sealed: no media key, path or URL in the database files, logs or answers", async () => {
    const { fields } = await receive("3EB0SEALED01", KINDS[0] as (typeof KINDS)[number]);
    await gw.gateway.store.ping();
    const db = new Database(gw.config.DATABASE_PATH, { readonly: true });
    try {
      const row = db
        .prepare("SELECT source, message_id, number_id FROM media WHERE provider_media_id = ?")
        .get("3EB0SEALED01") as { source: Buffer; message_id: string; number_id: string };
      expect(row).toMatchObject({ message_id: "3EB0SEALED01", number_id: numberId });
      expect(Buffer.isBuffer(row.source)).toBe(true);
    } finally {
      db.close();
    }
    const key = Buffer.from(fields.mediaKey);
    const secrets = [
      key,
      Buffer.from(key.toString("base64")),
      Buffer.from(fields.directPath.split("?")[0] ?? ""),
    ];
    for (const file of readdirSync(gw.dir).filter((f) => f.startsWith("wagate.db"))) {
      const bytes = readFileSync(`${gw.dir}/${file}`);
      for (const secret of secrets) expect(bytes.includes(secret), `${file}`).toBe(false);
    }
    const listing = await gw.request("GET", `/v1/messages?number=${numberId}&limit=100`, { token: inbox });
    for (const text of [gw.logs(), listing.text]) {
      expect(text).not.toContain(key.toString("base64"));
      expect(text).not.toContain("t62.7118-24");
    }
  });

  it("cuts off a file that does not decrypt to the sha256 the phone sent, and 404s an expired one", async () => {
    const kind = KINDS[3] as (typeof KINDS)[number];
    const { fields } = await receive("3EB0TAMPERED", kind);
    // Another medium's bytes under the same key: it decrypts, but to other bytes (or to nothing).
    media.tamper(fields.directPath, (encrypted) => {
      encrypted[encrypted.length - 40] = (encrypted[encrypted.length - 40] ?? 0) ^ 0xff;
      return encrypted;
    });
    const tampered = await fetchMedium("3EB0TAMPERED");
    expect(tampered.status).toBe(200);
    await expect(tampered.arrayBuffer()).rejects.toThrow();

    const expired = await receive("3EB0EXPIRED1", kind);
    media.expire(expired.fields.directPath);
    const gone = await fetchMedium("3EB0EXPIRED1");
    expect(gone.status).toBe(404);
    expect(await errorCode(gone)).toBe("not_found");
  });

  it("fetches only from WhatsApp's media servers: a URL the sender pointed elsewhere is refused unfetched", async () => {
    const kind = KINDS[0] as (typeof KINDS)[number];
    const { fields } = await media.media(randomBytes(1000), kind.type);
    const before = media.requested.length;
    for (const [id, url] of [
      ["3EB0EVIL0001", "https://169.254.169.254/latest/meta-data/"],
      ["3EB0EVIL0002", "http://mmg.whatsapp.net/v/t62/x.enc"],
      ["3EB0EVIL0003", "https://mmg.whatsapp.net.evil.example/v/t62/x.enc"],
    ] as const) {
      socket.inboundContent([
        {
          id,
          from: CUSTOMER,
          message: {
            imageMessage: { mimetype: "image/jpeg", mediaKey: fields.mediaKey, url, fileLength: 1000 },
          },
        },
      ]);
      await eventually(async () =>
        (
          await gw.request("GET", `/v1/messages?number=${numberId}&limit=100`, { token: inbox })
        ).json.messages.some((m: { id: string }) => m.id === id)
          ? true
          : undefined,
      );
      const res = await fetchMedium(id);
      expect(res.status, url).toBe(502);
      expect(await errorCode(res)).toBe("upstream_error");
    }
    expect(media.requested.length).toBe(before);
  });

  // Last: it moves the gateway's sealed values under another secret.
  it("re-seals a medium's source when API_SECRET rotates, bound to its row", async () => {
    const { fields } = await receive("3EB0ROTATED1", KINDS[0] as (typeof KINDS)[number]);
    const rotated = createSealer(randomBytes(32).toString("hex"), gw.config.API_SECRET);
    const owners: string[] = [];
    const counts = await gw.gateway.store.resealSecrets((owner, sealed) => {
      owners.push(owner.kind);
      return rotated.reseal(sealed, sealedOwnerAssociatedData(owner));
    });
    expect(counts.unopenable).toBe(0);
    expect(owners).toContain("media_source");
    await gw.gateway.store.ping();
    const db = new Database(gw.config.DATABASE_PATH, { readonly: true });
    try {
      const row = db
        .prepare("SELECT id, source FROM media WHERE provider_media_id = ?")
        .get("3EB0ROTATED1") as {
        id: string;
        source: Buffer;
      };
      const opened = openWebMediaSource(rotated, row.id, row.source);
      expect(opened).toMatchObject({ mediaType: "image", directPath: fields.directPath });
      expect(opened.mediaKey).toBe(Buffer.from(fields.mediaKey).toString("base64"));
      // Bound to its row: it does not open as another medium's.
      expect(() => openWebMediaSource(rotated, "another-row", row.source)).toThrow();
    } finally {
      db.close();
    }
  });
});
