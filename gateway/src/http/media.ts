import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { FastifyError, FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import { z } from "zod";
import type { Config } from "../config.js";
import type { Sealer } from "../crypto/sealer.js";
import { uuidv7 } from "../ids.js";
import { mediaAccountFor } from "../media/accounts.js";
import { CheckFailed, checkedDownload } from "../media/checked-download.js";
import {
  DownloadRefused,
  type GraphAnswer,
  type GraphMediaClient,
  graphMediaLookup,
} from "../media/graph-media.js";
import {
  declaredType,
  EXTENSIONS,
  kindOf,
  MAX_MEDIA_BYTES,
  MEDIA_CAPS,
  MEDIA_TYPES,
} from "../media/kinds.js";
import { chooseType, SNIFF_BYTES, sniffMedia } from "../media/sniff.js";
import { downloadWebMedium, openWebMediaSource, WebMediaRefused } from "../media/web-media.js";
import { DEFAULT_NUMBER_ID } from "../numbers/from.js";
import type { MediaRecord } from "../store/media.js";
import type { Store } from "../store/store.js";
import type { WebMediaSource } from "../transport/web/inbound-content.js";
import { mediaUploaded } from "./answers.js";
import type { ScopeGuard } from "./auth.js";
import { ApiError, notFound } from "./errors.js";
import { fromField, noQuery } from "./schemas.js";

// POST /v1/media: the raw body of one medium, streamed to Meta's `POST /{phone-number-id}/media` as it arrives
// (never held whole: at most the sniffer's head and a few socket chunks are in memory). The type is what the
// bytes are (media/sniff.ts); the Content-Type only chooses among what the bytes can be. The cap of the kind is
// enforced before the upload starts when Content-Length says it, and while streaming otherwise (the upload to
// Meta is then aborted: Meta never receives a whole file). GET /v1/media/:id: an upload of the caller's, or an
// inbound medium registered from Meta's webhooks, looked up at Meta and streamed back with Meta's content type,
// size and sha256 checked on the way. The number's access token stays in the gateway. A WhatsApp Web number's
// inbound medium (registered with its sealed source when the message arrived) is fetched from WhatsApp's media
// servers instead and decrypted by Baileys (media/web-media.ts), with its size and sha256 checked the same way.

export interface MediaRoutesOptions {
  config: Config;
  store: Store;
  sealer: Sealer;
  graph: GraphMediaClient;
  guard: (scope: "messages:send" | "inbox") => ScopeGuard;
  /** Where web numbers' media are fetched instead of WhatsApp's media servers (tests). */
  webMediaOrigin?: string;
}

export const uploadQuery = z.strictObject({ from: fromField.optional() });
export const mediaIdParams = z.strictObject({
  id: z
    .string()
    .min(1)
    .max(200)
    .regex(/^[A-Za-z0-9._-]+$/, { error: "must be a media id (ours from POST /v1/media, or Meta's)" }),
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** A content type passed through to the client: type/subtype and simple parameters only. */
const SAFE_CONTENT_TYPE =
  /^[A-Za-z0-9!#$&^_.+-]+\/[A-Za-z0-9!#$&^_.+-]+(\s*;\s*[A-Za-z0-9_-]+=[A-Za-z0-9_.+-]+)*$/;

/** How long a web medium's download may stay silent before the answer is cut off. */
const WEB_MEDIA_IDLE_MS = 30_000;

/** What the upload's body threw: the client is gone or sent too much. Not an error of ours or Meta's. */
class BodyStopped extends Error {
  constructor(readonly tooLarge: boolean) {
    super(tooLarge ? "over the cap" : "the upload was cut off");
    this.name = "BodyStopped";
  }
}

function tooLarge(kind: string, type: string): ApiError {
  return new ApiError(
    413,
    "payload_too_large",
    `a ${kind} (${type}) is at most ${MEDIA_CAPS[kind as keyof typeof MEDIA_CAPS]} bytes`,
  );
}

/** Meta's error as `(#code) message`, short; never the request or the token. */
function graphError(answer: Extract<GraphAnswer, { kind: "error" }>, what: string): ApiError {
  const error = (answer.body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  const detail =
    typeof error?.message === "string"
      ? `: ${String(error.message).slice(0, 200)}${typeof error.code === "number" ? ` (code ${error.code})` : ""}`
      : ` (HTTP ${answer.status})`;
  return new ApiError(502, "upstream_error", `Meta refused the ${what}${detail}`);
}

/** Answers an error before the body is read to its end (the onSend hook below closes the connection). */
function refuseUnread(reply: FastifyReply, error: ApiError) {
  return reply.status(error.statusCode).send({ error: { code: error.code, message: error.message } });
}

export const mediaRoutes: FastifyPluginAsync<MediaRoutesOptions> = async (app, options) => {
  const { config, store, sealer, graph, guard, webMediaOrigin } = options;

  // This plugin's routes only: the body stays the request stream (no JSON parser, no buffering, no bodyLimit).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", (_request, payload, done) => done(null, payload));
  // An answer given before the body was read to its end (401, 413, 415, 422, ...) closes the connection: Node would
  // otherwise read and discard up to 100 MB to keep it alive.
  app.addHook("onSend", async (request, reply) => {
    if (!request.raw.complete) reply.header("connection", "close");
  });
  app.setErrorHandler((error: FastifyError) => {
    if (error.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE")
      throw new ApiError(415, "unsupported_media_type", "Content-Type is not a valid media type");
    throw error;
  });

  app.post(
    "/v1/media",
    {
      onRequest: guard("messages:send"),
      schema: { querystring: uploadQuery, response: { 201: mediaUploaded } },
    },
    async (request, reply) => {
      const principal = request.principal;
      if (!principal) throw new ApiError(401, "unauthorized", "missing or invalid credentials");
      const { from } = request.query as z.infer<typeof uploadQuery>;
      const numberId = from === undefined || from === DEFAULT_NUMBER_ID ? null : from;
      const target = mediaAccountFor(config, store.numbers, sealer, numberId, "from");
      const header = request.headers["content-type"];
      if (typeof header !== "string" || header.trim() === "") {
        return refuseUnread(
          reply,
          new ApiError(
            415,
            "unsupported_media_type",
            "Content-Type is required: the medium's type, e.g. image/jpeg",
          ),
        );
      }
      const lengthHeader = request.headers["content-length"];
      const length = lengthHeader === undefined ? undefined : Number(lengthHeader);
      if (length !== undefined && length > MAX_MEDIA_BYTES)
        return refuseUnread(
          reply,
          new ApiError(413, "payload_too_large", `a medium is at most ${MAX_MEDIA_BYTES} bytes`),
        );

      const body = request.body as Readable | undefined;
      // Fastify hands no stream over for a request that announces no body at all.
      if (!body || typeof body[Symbol.asyncIterator] !== "function")
        throw new ApiError(400, "empty_body", "the body is empty: send the medium's bytes");
      const chunks = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
      const next = async () => {
        try {
          return await chunks.next();
        } catch {
          throw new BodyStopped(false);
        }
      };
      // The head: enough bytes to know what the medium is, before anything goes to Meta.
      const headChunks: Buffer[] = [];
      let headLength = 0;
      let complete = false;
      while (headLength < SNIFF_BYTES) {
        const r = await next();
        if (r.done) {
          complete = true;
          break;
        }
        headChunks.push(r.value);
        headLength += r.value.length;
      }
      const head = Buffer.concat(headChunks);
      if (head.length === 0)
        throw new ApiError(400, "empty_body", "the body is empty: send the medium's bytes");
      const decision = chooseType(declaredType(header), sniffMedia(head.subarray(0, SNIFF_BYTES), complete));
      if (decision.kind === "unsupported")
        return refuseUnread(reply, new ApiError(415, "unsupported_media_type", decision.message));
      if (decision.kind === "mismatch")
        return refuseUnread(reply, new ApiError(422, "media_type_mismatch", decision.message));
      const type = decision.type;
      const kind = MEDIA_TYPES[type];
      const cap = MEDIA_CAPS[kind];
      if ((length ?? head.length) > cap) return refuseUnread(reply, tooLarge(kind, type));

      const hash = createHash("sha256");
      let size = 0;
      const take = (chunk: Buffer) => {
        size += chunk.length;
        if (size > cap) throw new BodyStopped(true);
        hash.update(chunk);
        return chunk;
      };
      async function* bytes() {
        yield take(head);
        if (complete) return;
        for (;;) {
          const r = await next();
          if (r.done) return;
          yield take(r.value);
        }
      }

      let providerMediaId: string;
      const id = uuidv7();
      try {
        if (target.kind === "sandbox") {
          // Nothing leaves the machine: the bytes are checked, counted and dropped.
          for await (const _chunk of bytes());
          providerMediaId = `sandbox.${id}`;
        } else {
          const answer = await graph.upload(target.account, {
            type,
            filename: `${kind}.${EXTENSIONS[type]}`,
            body: bytes(),
            ...(length === undefined ? {} : { length }),
          });
          if (answer.kind === "error") return refuseUnread(reply, graphError(answer, "upload"));
          const metaId = (answer.body as { id?: unknown } | undefined)?.id;
          if (typeof metaId !== "string" || !/^[A-Za-z0-9._-]{1,200}$/.test(metaId))
            throw new ApiError(502, "upstream_error", "Meta's answer to the upload carries no media id");
          providerMediaId = metaId;
        }
      } catch (error) {
        if (error instanceof BodyStopped) {
          if (error.tooLarge) request.log.info({ size, cap, type }, "media upload over its cap, aborted");
          return refuseUnread(
            reply,
            error.tooLarge
              ? tooLarge(kind, type)
              : new ApiError(400, "bad_request", "the upload was cut off"),
          );
        }
        if (error instanceof ApiError) throw error;
        request.log.warn({ err: error }, "media upload to Meta failed");
        return refuseUnread(
          reply,
          new ApiError(502, "upstream_unreachable", "the upload to Meta did not complete"),
        );
      }
      const sha256 = hash.digest("hex");
      await store.media.recordMedia({
        id,
        subject: principal.subject,
        numberId,
        direction: "out",
        providerMediaId,
        mimeType: type,
        size,
        sha256,
        messageId: null,
        createdAt: Date.now(),
      });
      request.log.info({ mediaId: id, type, size, numberId }, "media uploaded");
      reply.header("location", `/v1/media/${id}`);
      return reply.status(201).send({ id, kind, mime_type: type, size, sha256 });
    },
  );

  /** A web number's inbound medium: fetched from WhatsApp's media servers, decrypted by Baileys, checked. */
  async function sendWebMedium(request: FastifyRequest, reply: FastifyReply, record: MediaRecord) {
    let source: WebMediaSource;
    try {
      source = openWebMediaSource(sealer, record.id, record.source as Buffer);
    } catch {
      throw new ApiError(
        409,
        "media_unopenable",
        "this medium's key cannot be opened with API_SECRET (it changed without API_SECRET_PREVIOUS)",
      );
    }
    const cap = MAX_MEDIA_BYTES;
    if (source.fileLength !== undefined && source.fileLength > cap)
      throw new ApiError(422, "media_too_large", `the medium is ${source.fileLength} bytes, over ${cap}`);
    let decrypted: Readable;
    try {
      decrypted = await downloadWebMedium(source, webMediaOrigin);
    } catch (error) {
      if (error instanceof WebMediaRefused) {
        request.log.warn({ mediaId: record.providerMediaId, reason: error.message }, "web medium refused");
        throw new ApiError(502, "upstream_error", error.message);
      }
      const status = (error as { output?: { statusCode?: unknown } }).output?.statusCode;
      if (status === 404 || status === 410)
        throw new ApiError(404, "not_found", "medium no longer on WhatsApp's servers (media expire)");
      // Baileys' error names the URL: only the status is logged.
      request.log.warn({ mediaId: record.providerMediaId, status }, "web medium download failed");
      throw new ApiError(502, "upstream_unreachable", "WhatsApp's media server could not be reached");
    }
    const checked = checkedDownload({
      maxBytes: cap,
      expectedSize: source.fileLength,
      expectedSha256: source.fileSha256,
    });
    // Baileys pipes the HTTP body into its decipher without passing an error on: a server that stops sending
    // would leave the answer open forever. Silence for WEB_MEDIA_IDLE_MS ends it.
    const idle = setTimeout(
      () => decrypted.destroy(new CheckFailed("WhatsApp's media server stopped sending")),
      WEB_MEDIA_IDLE_MS,
    );
    decrypted.on("data", () => idle.refresh());
    decrypted.on("close", () => clearTimeout(idle));
    pipeline(decrypted, checked).catch((error: unknown) => {
      clearTimeout(idle);
      request.log.warn(
        {
          mediaId: record.providerMediaId,
          reason: error instanceof CheckFailed ? error.reason : "decryption",
        },
        "web medium failed a check or did not decrypt; cut off",
      );
    });
    const mimeType = source.mimeType ?? "application/octet-stream";
    reply.header("content-type", SAFE_CONTENT_TYPE.test(mimeType) ? mimeType : "application/octet-stream");
    if (source.fileLength !== undefined) reply.header("content-length", source.fileLength);
    return reply.status(200).send(checked);
  }

  app.get(
    "/v1/media/:id",
    // No automatic HEAD: it would download the whole medium from Meta to answer with headers only.
    {
      onRequest: guard("inbox"),
      schema: { params: mediaIdParams, querystring: noQuery },
      exposeHeadRoute: false,
    },
    async (request, reply) => {
      const principal = request.principal;
      if (!principal) throw new ApiError(401, "unauthorized", "missing or invalid credentials");
      const { id } = request.params as z.infer<typeof mediaIdParams>;
      // Ours: only the subject that uploaded it. Meta's: an inbound medium, readable by every inbox reader.
      let record = UUID.test(id) ? await store.media.getMedia(id) : undefined;
      if (record && record.subject !== principal.subject) record = undefined;
      record ??= await store.media.getInboundMedia(id);
      if (!record) throw notFound("medium");
      if (record.source) return sendWebMedium(request, reply, record);
      const target = mediaAccountFor(config, store.numbers, sealer, record.numberId, "the medium's number");
      if (target.kind === "sandbox")
        throw new ApiError(409, "media_not_stored", "the sandbox transport keeps no media bytes");

      const answer = await graph.lookup(target.account, record.providerMediaId).catch((error: unknown) => {
        request.log.warn({ err: error }, "media lookup at Meta failed");
        throw new ApiError(502, "upstream_unreachable", "Meta could not be reached");
      });
      if (answer.kind === "error") {
        if (answer.status === 404)
          throw new ApiError(404, "not_found", "medium no longer at Meta (media expire)");
        throw graphError(answer, "media lookup");
      }
      const found = graphMediaLookup.safeParse(answer.body);
      if (!found.success)
        throw new ApiError(502, "upstream_error", "Meta's media lookup answer is not as documented");
      const { url, mime_type: mimeType, sha256, file_size: fileSize } = found.data;
      const kind = kindOf(mimeType);
      const cap = MEDIA_CAPS[kind];
      if (fileSize !== undefined && fileSize > cap)
        throw new ApiError(
          422,
          "media_too_large",
          `Meta says the medium is ${fileSize} bytes, over the ${cap} of a ${kind}`,
        );

      const download = await graph.download(target.account, url).catch((error: unknown) => {
        if (error instanceof DownloadRefused) throw new ApiError(502, "upstream_error", error.reason);
        request.log.warn({ err: error }, "media download from Meta failed");
        throw new ApiError(502, "upstream_unreachable", "Meta could not be reached");
      });
      const status = download.statusCode ?? 0;
      if (status !== 200) {
        download.destroy();
        throw new ApiError(
          502,
          "upstream_error",
          status >= 300 && status < 400
            ? "Meta's media URL redirected; redirects are not followed"
            : `Meta's media download answered HTTP ${status}`,
        );
      }
      const announced = download.headers["content-length"];
      const contentLength = announced === undefined ? undefined : Number(announced);
      if (
        contentLength !== undefined &&
        (!Number.isSafeInteger(contentLength) ||
          contentLength > cap ||
          (fileSize !== undefined && contentLength !== fileSize))
      ) {
        download.destroy();
        throw new ApiError(502, "upstream_error", "Meta's media download is not the size its lookup named");
      }
      const size = fileSize ?? contentLength;
      const checked = checkedDownload({ maxBytes: cap, expectedSize: size, expectedSha256: sha256 });
      pipeline(download, checked).catch((error: unknown) => {
        if (error instanceof CheckFailed)
          request.log.warn({ mediaId: id, reason: error.reason }, "media download failed a check; cut off");
      });
      reply.header("content-type", SAFE_CONTENT_TYPE.test(mimeType) ? mimeType : "application/octet-stream");
      if (size !== undefined) reply.header("content-length", size);
      return reply.status(200).send(checked);
    },
  );
};
