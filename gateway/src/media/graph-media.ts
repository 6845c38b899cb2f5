import { randomBytes } from "node:crypto";
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { pipeline } from "node:stream/promises";
import { z } from "zod";
import { createBoundedResolver } from "../dns/bounded-resolver.js";
import type { MediaType } from "./kinds.js";

// Meta's media endpoints over node:http(s), streaming both ways: the upload's multipart body is produced chunk by
// chunk from the client's request as Graph reads it (backpressure end to end), and a download is handed over as
// the response stream. The access token goes to the Graph API and to the download URL Graph names, nowhere else;
// redirects are never followed.

/** Who talks to Meta: a cloud number's phone number id and its access token. */
export interface CloudAccount {
  phoneNumberId: string;
  accessToken: string;
}

export type GraphAnswer = { kind: "ok"; body: unknown } | { kind: "error"; status: number; body: unknown };

export interface UploadInput {
  type: MediaType;
  filename: string;
  /** The file's bytes, in order; an error it throws aborts the upload (Graph receives no whole file). */
  body: AsyncIterable<Buffer>;
  /** The file's length when the client declared it: the multipart body then has a Content-Length. */
  length?: number;
}

export interface GraphMediaClient {
  /** `POST /{phone-number-id}/media`, multipart/form-data (messaging_product, type, file). */
  upload(account: CloudAccount, input: UploadInput): Promise<GraphAnswer>;
  /** `GET /{media-id}`: the short-lived download URL, mime type, sha256 and size. */
  lookup(account: CloudAccount, mediaId: string): Promise<GraphAnswer>;
  /**
   * `GET <url>` with the account's token; the URL must be https (or on the Graph API's own origin, a local fake).
   * Resolves with the response as it starts; the caller reads or destroys it.
   */
  download(account: CloudAccount, url: string): Promise<IncomingMessage>;
  close(): void;
}

export const graphMediaLookup = z.object({
  url: z.string().min(1).max(4096),
  mime_type: z.string().min(1).max(255),
  sha256: z.string().max(128).optional(),
  file_size: z.coerce.number().int().nonnegative().optional(),
});

/** Graph's answers are a few hundred bytes; anything larger is not read further. */
const MAX_ANSWER_BYTES = 64 * 1024;
const CONNECT_TIMEOUT_MS = 10_000;
/** A transfer that moves no byte for this long is given up (a 100 MB upload takes minutes; a stall does not). */
const IDLE_TIMEOUT_MS = 60_000;

export class DownloadRefused extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = "DownloadRefused";
  }
}

function readAnswer(res: IncomingMessage): Promise<GraphAnswer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_ANSWER_BYTES) chunks.push(chunk);
    });
    res.on("error", reject);
    res.on("end", () => {
      let body: unknown;
      try {
        body = size <= MAX_ANSWER_BYTES ? JSON.parse(Buffer.concat(chunks).toString("utf8")) : undefined;
      } catch {
        body = undefined;
      }
      const status = res.statusCode ?? 0;
      resolve(status >= 200 && status < 300 ? { kind: "ok", body } : { kind: "error", status, body });
    });
  });
}

/** A filename for the multipart part: ASCII letters, digits, dots, dashes and underscores only. */
function safeFilename(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 128) || "file";
}

export function createGraphMediaClient(options: {
  baseUrl: string;
  dnsServers?: readonly string[];
}): GraphMediaClient {
  const base = new URL(options.baseUrl);
  const resolver = createBoundedResolver({
    deadlineMs: CONNECT_TIMEOUT_MS / 2,
    maxInFlightPerSubject: 16,
    ...(options.dnsServers ? { servers: options.dnsServers } : {}),
  });
  const agentOptions = {
    keepAlive: true,
    timeout: IDLE_TIMEOUT_MS,
    lookup: resolver.lookupFor("graph-media"),
  };
  const agents = { http: new HttpAgent(agentOptions), https: new HttpsAgent(agentOptions) };

  function send(
    url: URL,
    method: "GET" | "POST",
    headers: Record<string, string | number>,
    body?: () => AsyncIterable<Buffer>,
  ): Promise<IncomingMessage> {
    const secure = url.protocol === "https:";
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = (secure ? httpsRequest : httpRequest)(url, {
        method,
        agent: secure ? agents.https : agents.http,
        headers,
      });
      let settled = false;
      const fail = (error: unknown) => {
        if (settled) return;
        settled = true;
        reject(error);
      };
      req.setTimeout(IDLE_TIMEOUT_MS, () => req.destroy(new Error("graph media: no progress")));
      req.on("error", fail);
      req.on("response", (res) => {
        if (settled) {
          res.destroy();
          return;
        }
        settled = true;
        resolve(res);
      });
      if (!body) {
        req.end();
        return;
      }
      // The body's own error (over the cap, the client gone) wins over the aborted request's.
      pipeline(body(), req).catch((error: unknown) => {
        fail(error);
        req.destroy();
      });
    });
  }

  return {
    async upload(account, input) {
      const boundary = `wagate-${randomBytes(16).toString("hex")}`;
      const part = (name: string, value: string) =>
        `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
      const preamble = Buffer.from(
        part("messaging_product", "whatsapp") +
          part("type", input.type) +
          `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${safeFilename(input.filename)}"\r\n` +
          `Content-Type: ${input.type}\r\n\r\n`,
      );
      const epilogue = Buffer.from(`\r\n--${boundary}--\r\n`);
      const url = new URL(`${options.baseUrl}/${encodeURIComponent(account.phoneNumberId)}/media`);
      const res = await send(
        url,
        "POST",
        {
          authorization: `Bearer ${account.accessToken}`,
          "content-type": `multipart/form-data; boundary=${boundary}`,
          ...(input.length === undefined
            ? {}
            : { "content-length": preamble.length + input.length + epilogue.length }),
        },
        async function* () {
          yield preamble;
          yield* input.body;
          yield epilogue;
        },
      );
      return readAnswer(res);
    },

    async lookup(account, mediaId) {
      const url = new URL(`${options.baseUrl}/${encodeURIComponent(mediaId)}`);
      // Meta checks the media belongs to this number when its phone number id is given.
      url.searchParams.set("phone_number_id", account.phoneNumberId);
      const res = await send(url, "GET", { authorization: `Bearer ${account.accessToken}` });
      return readAnswer(res);
    },

    async download(account, raw) {
      let url: URL;
      try {
        url = new URL(raw);
      } catch {
        throw new DownloadRefused("the media URL Graph named is not a URL");
      }
      if (url.protocol !== "https:" && url.origin !== base.origin)
        throw new DownloadRefused("the media URL Graph named is not https");
      if (url.username || url.password)
        throw new DownloadRefused("the media URL Graph named carries credentials");
      return send(url, "GET", { authorization: `Bearer ${account.accessToken}` });
    },

    close() {
      agents.http.destroy();
      agents.https.destroy();
    },
  };
}
