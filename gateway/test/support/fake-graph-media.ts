import { createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";

// The fake Graph API's media endpoints (used by fake-graph.ts): `POST /{phone-number-id}/media` parses the
// multipart body as it streams in (counting and hashing the file part, keeping its bytes for a later download),
// `GET /{media-id}` answers Meta's lookup shape with a download URL on the fake itself, and that URL serves the
// bytes with the bearer token checked. A medium can be made to misbehave (wrong sha256, a redirect, a size that
// lies) to show the gateway's checks.

export interface RecordedUpload {
  readonly phoneNumberId: string;
  /** The form's text fields (messaging_product, type). */
  readonly fields: Record<string, string>;
  fileType: string | undefined;
  filename: string | undefined;
  /** File bytes received so far (all of them once `complete`). */
  fileBytes: number;
  sha256: string | undefined;
  /** The closing boundary arrived: the whole file was received. */
  complete: boolean;
  /** The connection ended before the closing boundary. */
  aborted: boolean;
  mediaId: string | undefined;
}

export interface FakeMedium {
  bytes: Buffer;
  mimeType: string;
  /** What the lookup says instead of the real values (to show the gateway's checks). */
  sha256?: string;
  fileSize?: number;
  /** The download answers a redirect to this URL instead of the bytes. */
  redirectTo?: string;
  /** The download URL the lookup names instead of the fake's own. */
  url?: string;
}

export interface FakeGraphMedia {
  readonly uploads: RecordedUpload[];
  /** Media the fake knows by id (uploaded ones and those added by a test). */
  readonly media: Map<string, FakeMedium>;
  /** Adds a medium (as if a WhatsApp user had sent it); returns Meta's media id for it. */
  add(medium: FakeMedium): string;
  /** How many download requests were made. */
  downloads: number;
}

const sha256Hex = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** A streaming multipart/form-data reader: text fields kept, the file part handed over chunk by chunk. */
async function readMultipart(
  req: IncomingMessage,
  boundary: string,
  onField: (name: string, value: string) => void,
  onFile: (info: { name: string; filename?: string; type?: string }) => void,
  onFileBytes: (chunk: Buffer) => void,
): Promise<boolean> {
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  // The first boundary has no leading CRLF: pretend it had one.
  let pending = Buffer.from("\r\n");
  let state: "preamble" | "headers" | "data" | "done" = "preamble";
  let part: { name: string; filename?: string; type?: string; file: boolean; value: Buffer[] } | undefined;
  const finishPart = () => {
    if (part && !part.file) onField(part.name, Buffer.concat(part.value).toString("utf8"));
    part = undefined;
  };
  for await (const chunk of req) {
    pending = Buffer.concat([pending, chunk as Buffer]);
    for (;;) {
      if (state === "preamble" || state === "data") {
        const at = pending.indexOf(delimiter);
        if (at < 0) {
          // Keep what could be the start of a delimiter; the rest is data.
          const keep = Math.min(pending.length, delimiter.length + 2);
          const data = pending.subarray(0, pending.length - keep);
          if (state === "data" && data.length > 0) {
            if (part?.file) onFileBytes(data);
            else part?.value.push(Buffer.from(data));
          }
          pending = Buffer.from(pending.subarray(pending.length - keep));
          break;
        }
        const data = pending.subarray(0, at);
        if (state === "data") {
          if (part?.file) onFileBytes(data);
          else part?.value.push(Buffer.from(data));
          finishPart();
        }
        const after = pending.subarray(at + delimiter.length);
        if (after.length < 2) break;
        if (after.subarray(0, 2).toString() === "--") {
          state = "done";
          return true;
        }
        pending = Buffer.from(after.subarray(2)); // CRLF after the boundary
        state = "headers";
        continue;
      }
      if (state === "headers") {
        const end = pending.indexOf("\r\n\r\n");
        if (end < 0) break;
        const headers = pending.subarray(0, end).toString("utf8");
        pending = Buffer.from(pending.subarray(end + 4));
        const name = /name="([^"]*)"/.exec(headers)?.[1] ?? "";
        const filename = /filename="([^"]*)"/.exec(headers)?.[1];
        const type = /content-type:\s*([^\r\n]+)/i.exec(headers)?.[1]?.trim();
        part = {
          name,
          file: filename !== undefined,
          value: [],
          ...(filename !== undefined ? { filename } : {}),
          ...(type ? { type } : {}),
        };
        if (part.file) onFile(part);
        state = "data";
        continue;
      }
      break;
    }
  }
  return false;
}

export function createFakeGraphMedia(options: {
  accessToken?: string;
  origin: () => string;
  version: string;
}) {
  const uploads: RecordedUpload[] = [];
  const media = new Map<string, FakeMedium>();
  let counter = 0;
  const newId = () => `${900000000000000 + ++counter}`;
  const uploadPath = new RegExp(`^/${options.version.replace(".", "\\.")}/([0-9]+)/media$`);
  const lookupPath = new RegExp(`^/${options.version.replace(".", "\\.")}/([0-9]+)$`);
  const downloadPath = /^\/media-download\/([0-9]+)$/;
  const state: FakeGraphMedia = {
    uploads,
    media,
    downloads: 0,
    add(medium) {
      const id = newId();
      media.set(id, medium);
      return id;
    },
  };

  function json(res: ServerResponse, status: number, body: unknown) {
    const text = JSON.stringify(body);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
  }
  const authorized = (req: IncomingMessage) =>
    !options.accessToken || req.headers.authorization === `Bearer ${options.accessToken}`;
  const unauthorized = (res: ServerResponse) =>
    json(res, 401, {
      error: { message: "(#190) Invalid OAuth access token", type: "OAuthException", code: 190 },
    });

  /** Handles the request when it is a media one; false otherwise (the body is then not read). */
  async function handle(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
    const upload = req.method === "POST" ? uploadPath.exec(path) : null;
    if (upload) {
      const record: RecordedUpload = {
        phoneNumberId: upload[1] ?? "",
        fields: {},
        fileType: undefined,
        filename: undefined,
        fileBytes: 0,
        sha256: undefined,
        complete: false,
        aborted: false,
        mediaId: undefined,
      };
      uploads.push(record);
      const boundary = /boundary=([^;]+)/.exec(req.headers["content-type"] ?? "")?.[1]?.replace(/^"|"$/g, "");
      if (!authorized(req)) {
        req.resume();
        unauthorized(res);
        return true;
      }
      if (!boundary) {
        req.resume();
        json(res, 400, { error: { message: "(#100) multipart/form-data expected", code: 100 } });
        return true;
      }
      const hash = createHash("sha256");
      const kept: Buffer[] = [];
      let complete = false;
      try {
        complete = await readMultipart(
          req,
          boundary,
          (name, value) => {
            record.fields[name] = value;
          },
          (info) => {
            record.filename = info.filename;
            record.fileType = info.type;
          },
          (chunk) => {
            record.fileBytes += chunk.length;
            hash.update(chunk);
            kept.push(Buffer.from(chunk));
          },
        );
      } catch {
        complete = false;
      }
      record.complete = complete;
      if (!complete) {
        record.aborted = true;
        res.destroy();
        return true;
      }
      record.sha256 = hash.digest("hex");
      if (record.fields.messaging_product !== "whatsapp" || !record.fields.type) {
        json(res, 400, { error: { message: "(#100) messaging_product and type are required", code: 100 } });
        return true;
      }
      const id = newId();
      record.mediaId = id;
      media.set(id, { bytes: Buffer.concat(kept), mimeType: record.fields.type });
      json(res, 200, { id });
      return true;
    }
    const lookup = req.method === "GET" ? lookupPath.exec(path) : null;
    if (lookup) {
      req.resume();
      if (!authorized(req)) {
        unauthorized(res);
        return true;
      }
      const id = lookup[1] ?? "";
      const medium = media.get(id);
      if (!medium) {
        json(res, 404, {
          error: { message: "Unsupported get request", type: "GraphMethodException", code: 100 },
        });
        return true;
      }
      json(res, 200, {
        messaging_product: "whatsapp",
        url: medium.url ?? `${options.origin()}/media-download/${id}`,
        mime_type: medium.mimeType,
        sha256: medium.sha256 ?? sha256Hex(medium.bytes),
        file_size: medium.fileSize ?? medium.bytes.length,
        id,
      });
      return true;
    }
    const download = req.method === "GET" ? downloadPath.exec(path) : null;
    if (download) {
      req.resume();
      state.downloads++;
      if (!authorized(req)) {
        unauthorized(res);
        return true;
      }
      const medium = media.get(download[1] ?? "");
      if (!medium) {
        json(res, 404, { error: { message: "not found", code: 100 } });
        return true;
      }
      if (medium.redirectTo) {
        res.writeHead(302, { location: medium.redirectTo, "content-length": 0 });
        res.end();
        return true;
      }
      res.writeHead(200, { "content-type": medium.mimeType, "content-length": medium.bytes.length });
      res.end(medium.bytes);
      return true;
    }
    return false;
  }

  return { state, handle };
}
