import type { AnyMessageContent, WAMessage } from "baileys";
import type { FastifyBaseLogger } from "fastify";
import QRCode from "qrcode";
import type { Sealer } from "../../crypto/sealer.js";
import type { EventSink } from "../../events.js";
import { publishStatusEvents } from "../../http/meta-webhook.js";
import type { LinkAnswer, LinkRequest } from "../../http/numbers.js";
import { uuidv7 } from "../../ids.js";
import type { InboundPipeline } from "../../inbound/pipeline.js";
import { CheckFailed } from "../../media/checked-download.js";
import { MEDIA_CAPS } from "../../media/kinds.js";
import { type FetchedMedium, LinkRefused } from "../../media/link-fetch.js";
import { sealWebMediaSource } from "../../media/web-media.js";
import type { OutgoingMessage } from "../../messages.js";
import { cloudOnly } from "../../numbers/from.js";
import { backoffDelay } from "../../queue/backoff.js";
import type { NewMedia } from "../../store/media.js";
import type { InboundMessage, StatusUpdate, Store } from "../../store/store.js";
import type { SendOutcome } from "../transport.js";
import { sealedAuthState } from "./auth-state.js";
import type { BaileysModule } from "./baileys.js";
import { webInboundContent, webMediaSource } from "./inbound-content.js";
import { quietBaileysLogger } from "./logger.js";
import type { SocketFactory, WebSocketEvents, WebSocketLike } from "./socket.js";
import { vcardOf } from "./vcard.js";

// One WhatsApp Web number: its socket, its link attempts, its reconnections.
//
// Linking is an admin act (POST /v1/numbers/:id/link): a fresh session, the first QR code (or a pairing code)
// answered to the admin, the attempt ended after `linkTimeoutMs` (at most 60 s) if the phone did not scan it. The
// session's keys are written, sealed, to the store whenever Baileys asks (auth-state.ts). Once linked, a dropped
// connection is re-established with exponential backoff and jitter; a logout by the phone wipes the session and
// makes the number `unlinked` (event `number.unlinked`); its queued messages then wait and fail (manager.ts).
// Inbound messages are committed before they are processed, once per id, through the same pipeline as Meta's.

export interface WebSessionOptions {
  numberId: string;
  name: string;
  store: Store;
  sealer: Sealer;
  log: FastifyBaseLogger;
  events: EventSink;
  inbound: InboundPipeline;
  socketFactory: SocketFactory;
  baileys: () => Promise<Pick<BaileysModule, "BufferJSON" | "initAuthCreds" | "proto">>;
  linkTimeoutMs: number;
  /** How long a link request waits for WhatsApp's first QR code before answering that it cannot link now. */
  firstAnswerTimeoutMs: number;
  reconnectBaseMs: number;
  reconnectMaxMs: number;
  /** Fetches a medium sent by link, through the SSRF guard; without it web numbers send no media. */
  fetchLink?: MediaLinkFetcher;
  onEnqueued?: () => void;
  now?: () => number;
}

/** A medium's bytes from its link, capped at `maxBytes` (media/link-fetch.ts); throws LinkRefused. */
export type MediaLinkFetcher = (link: string, maxBytes: number, numberId: string) => Promise<FetchedMedium>;

/** Baileys' DisconnectReason values the session acts on. */
const LOGGED_OUT = 401;
const RESTART_REQUIRED = 515;
const CONNECTION_REPLACED = 440;

/** Baileys' message status (proto.WebMessageInfo.Status) → ours. */
const RECEIPTS: Record<number, StatusUpdate["status"]> = {
  0: "failed",
  2: "sent",
  3: "delivered",
  4: "read",
  5: "read",
};

interface LinkAttempt {
  request: LinkRequest;
  answered: boolean;
  answer: (answer: LinkAnswer) => void;
  timer: NodeJS.Timeout;
  expiresAt: number;
}

const digitsOf = (jid: string) =>
  jid
    .split("@")[0]
    ?.split(":")[0]
    ?.replace(/[^0-9]/g, "") ?? "";

function statusCodeOf(error: unknown): number | undefined {
  const code = (error as { output?: { statusCode?: unknown } } | undefined)?.output?.statusCode;
  return typeof code === "number" ? code : undefined;
}

interface LinkedMedium {
  kind: "image" | "video" | "audio" | "document" | "sticker";
  link: string;
  caption?: string | undefined;
  filename?: string | undefined;
}

/** A media message by link (by id: an upload to Meta, which a web number cannot send). */
function linkedMedium(message: OutgoingMessage): LinkedMedium | undefined {
  switch (message.type) {
    case "image":
    case "video":
    case "audio":
    case "document":
    case "sticker": {
      const object = (
        message as unknown as Record<string, { link?: string; caption?: string; filename?: string }>
      )[message.type];
      if (!object?.link) return undefined;
      return { kind: message.type, link: object.link, caption: object.caption, filename: object.filename };
    }
    default:
      return undefined;
  }
}

/** Baileys' content for a fetched medium; the mime type is the server's when it names one of the kind's. */
function baileysMedium(medium: LinkedMedium, fetched: FetchedMedium): AnyMessageContent {
  const stream = { stream: fetched.stream };
  const type = fetched.contentType;
  const caption = medium.caption !== undefined ? { caption: medium.caption } : {};
  switch (medium.kind) {
    case "image":
      return { image: stream, ...caption };
    case "video":
      return { video: stream, ...caption };
    case "audio":
      return { audio: stream, mimetype: type?.startsWith("audio/") ? type : "audio/mpeg" };
    case "sticker":
      return { sticker: stream };
    case "document":
      return {
        document: stream,
        mimetype: type ?? "application/octet-stream",
        ...(medium.filename !== undefined ? { fileName: medium.filename } : {}),
        ...caption,
      };
  }
}

/** A send while the socket is down: tried again once it is back (a reconnect takes seconds). */
function reconnecting(): SendOutcome {
  return {
    kind: "retryable",
    code: "number_disconnected",
    message: "the number's connection is being re-established",
    minDelayMs: 5_000,
  };
}

/** Hands `content` to Baileys, quoting the message's context; accepted under WhatsApp's id for it. */
async function handOver(
  socket: WebSocketLike,
  message: OutgoingMessage,
  jid: string,
  content: AnyMessageContent,
): Promise<SendOutcome> {
  const sent = await socket.sendMessage(
    jid,
    content,
    message.context ? { quoted: quotedMessage(message.context, jid) } : undefined,
  );
  return { kind: "accepted", providerMessageId: sent?.key.id ?? null };
}

/** Baileys' content for what WhatsApp Web can carry; undefined for what only the Cloud API sends. */
function webContent(message: OutgoingMessage, jid: string): AnyMessageContent | undefined {
  switch (message.type) {
    case "text":
      return { text: message.text.body };
    case "location": {
      const { latitude, longitude, name, address } = message.location;
      return {
        location: {
          degreesLatitude: latitude,
          degreesLongitude: longitude,
          ...(name !== undefined ? { name } : {}),
          ...(address !== undefined ? { address } : {}),
        },
      };
    }
    case "contacts":
      return {
        contacts: {
          displayName:
            message.contacts.length === 1
              ? message.contacts[0]?.name.formatted_name
              : `${message.contacts.length} contacts`,
          contacts: message.contacts.map((c) => ({ displayName: c.name.formatted_name, vcard: vcardOf(c) })),
        },
      };
    case "reaction":
      return {
        react: {
          text: message.reaction.emoji,
          key: { remoteJid: jid, id: message.reaction.message_id, fromMe: message.reaction.from_me === true },
        },
      };
    default:
      return undefined;
  }
}

/**
 * The message a reply quotes, as Baileys takes it: its key (whose it is: ours when the outbox mapped our id, the
 * customer's otherwise) and a content, which Baileys requires; the phone finds the quoted message by its id.
 */
function quotedMessage(context: NonNullable<OutgoingMessage["context"]>, jid: string): WAMessage {
  return {
    key: { remoteJid: jid, id: context.message_id, fromMe: context.from_me === true },
    message: { conversation: "" },
  };
}

function secondsToMs(value: unknown, fallback: number): number {
  if (typeof value === "number") return value * 1000;
  const n = Number(String(value ?? ""));
  return Number.isFinite(n) && n > 0 ? n * 1000 : fallback;
}

export class WebSession {
  private socket: WebSocketLike | undefined;
  /** Each socket's events carry the generation it was opened in: events of a replaced socket are ignored. */
  private generation = 0;
  private linking: LinkAttempt | undefined;
  private reconnectAttempts = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private open = false;
  /** The credentials writes in flight: a reconnection reads the session only after they committed. */
  private credsWritten: Promise<void> = Promise.resolve();
  private readonly now: () => number;

  constructor(private readonly o: WebSessionOptions) {
    this.now = o.now ?? Date.now;
  }

  get connected(): boolean {
    return this.open;
  }

  get linkInProgress(): boolean {
    return this.linking !== undefined;
  }

  /** A linked number at start: connect with the stored session. */
  async resume(): Promise<void> {
    await this.connect();
  }

  async link(request: LinkRequest): Promise<LinkAnswer> {
    if (this.linking) return { kind: "busy" };
    const o = this.o;
    let answer!: (answer: LinkAnswer) => void;
    const answered = new Promise<LinkAnswer>((resolve) => {
      answer = resolve;
    });
    const expiresAt = this.now() + o.linkTimeoutMs;
    this.linking = {
      request,
      answered: false,
      answer: (a) => {
        if (this.linking) this.linking.answered = true;
        answer(a);
      },
      timer: setTimeout(() => void this.endLink("expired"), o.linkTimeoutMs),
      expiresAt,
    };
    this.linking.timer.unref();
    // A new link starts from nothing: whatever an earlier session left is wiped first.
    this.teardownSocket();
    await o.store.numbers.wipeSession(o.numberId);
    await o.store.numbers.setNumberStatus(o.numberId, { status: "linking" }, this.now());
    const firstAnswer = setTimeout(
      () => this.failLink("WhatsApp did not answer in time; is the gateway online?"),
      o.firstAnswerTimeoutMs,
    );
    firstAnswer.unref();
    this.connect().catch((error: unknown) => {
      o.log.warn({ numberId: o.numberId, err: error }, "web: the link attempt could not start");
      this.failLink("the WhatsApp Web client could not start");
    });
    try {
      return await answered;
    } finally {
      clearTimeout(firstAnswer);
    }
  }

  /** The send path (manager.ts decides about unlinked numbers first). */
  async send(message: OutgoingMessage): Promise<SendOutcome> {
    const jid = `${digitsOf(message.to)}@s.whatsapp.net`;
    const medium = linkedMedium(message);
    if (medium && this.o.fetchLink) return this.sendMedium(message, jid, medium, this.o.fetchLink);
    const content = webContent(message, jid);
    // Refused before queueing (numbers/from.ts); a message queued before that rule existed fails here.
    if (!content) {
      const refusal = cloudOnly(message.type);
      return {
        kind: "permanent",
        code: refusal?.code ?? "unsupported_on_web",
        message: `web numbers cannot send ${refusal?.what ?? `${message.type} messages`}`,
      };
    }
    const socket = this.socket;
    if (!socket || !this.open) return reconnecting();
    try {
      return await handOver(socket, message, jid, content);
    } catch (error) {
      this.o.log.warn({ numberId: this.o.numberId, err: error }, "web: send failed");
      // It may have left before the error: not resent until its lease ends.
      return { kind: "in_doubt", code: "web_send_failed", message: "the web socket failed while sending" };
    }
  }

  /**
   * A medium by link: fetched through the SSRF guard once the socket is open (not before: a disconnected number
   * would fetch it for nothing), handed to Baileys as a stream, which encrypts and uploads it to WhatsApp.
   */
  private async sendMedium(
    message: OutgoingMessage,
    jid: string,
    medium: LinkedMedium,
    fetchLink: MediaLinkFetcher,
  ): Promise<SendOutcome> {
    const socket = this.socket;
    if (!socket || !this.open) return reconnecting();
    let fetched: FetchedMedium;
    try {
      fetched = await fetchLink(medium.link, MEDIA_CAPS[medium.kind], this.o.numberId);
    } catch (error) {
      if (!(error instanceof LinkRefused)) throw error;
      return error.retryable
        ? { kind: "retryable", code: "media_link_unavailable", message: error.message, minDelayMs: 30_000 }
        : { kind: "permanent", code: "media_link_refused", message: error.message };
    }
    let tooLarge = false;
    fetched.stream.on("error", (error) => {
      if (error instanceof CheckFailed) tooLarge = true;
    });
    const content = baileysMedium(medium, fetched);
    try {
      return await handOver(socket, message, jid, content);
    } catch (error) {
      fetched.stream.destroy();
      if (tooLarge)
        return {
          kind: "permanent",
          code: "media_too_large",
          message: `the link's ${medium.kind} is over ${MEDIA_CAPS[medium.kind]} bytes`,
        };
      this.o.log.warn({ numberId: this.o.numberId, err: error }, "web: media send failed");
      return { kind: "in_doubt", code: "web_send_failed", message: "the web socket failed while sending" };
    }
  }

  /** Blue ticks on a received message (and, as on the phone, on the chat's earlier ones), in chat `chatJid`. */
  async markRead(chatJid: string, messageId: string): Promise<SendOutcome> {
    const socket = this.socket;
    if (!socket || !this.open) {
      return {
        kind: "retryable",
        code: "number_disconnected",
        message: "the number's connection is being re-established",
      };
    }
    try {
      await socket.readMessages([{ remoteJid: chatJid, id: messageId, fromMe: false }]);
      return { kind: "accepted", providerMessageId: null };
    } catch (error) {
      this.o.log.warn({ numberId: this.o.numberId, err: error }, "web: read receipt failed");
      return { kind: "retryable", code: "web_read_failed", message: "the web socket failed while sending" };
    }
  }

  /** Deleted: logs the session out at WhatsApp (best effort) and stops. The store's delete wipes the keys. */
  async forget(): Promise<void> {
    this.closed = true;
    this.clearTimers();
    const socket = this.socket;
    this.socket = undefined;
    // The logout's own close event belongs to no one any more: the delete publishes `number.unlinked` itself.
    this.generation++;
    if (this.linking) this.linking.answer({ kind: "unavailable", reason: "the number was deleted" });
    this.linking = undefined;
    if (socket && this.open) await socket.logout().catch(() => undefined);
    else await Promise.resolve(socket?.end(undefined)).catch(() => undefined);
    this.open = false;
  }

  /** The gateway stops: the socket closes, the session stays stored. */
  async close(): Promise<void> {
    this.closed = true;
    this.clearTimers();
    if (this.linking) await this.endLink("gateway stopping");
    this.teardownSocket();
  }

  private clearTimers(): void {
    clearTimeout(this.reconnectTimer);
    if (this.linking) clearTimeout(this.linking.timer);
  }

  private teardownSocket(): void {
    const socket = this.socket;
    this.socket = undefined;
    this.open = false;
    this.generation++;
    if (socket) void Promise.resolve(socket.end(undefined)).catch(() => undefined);
  }

  private failLink(reason: string): void {
    const attempt = this.linking;
    if (!attempt || attempt.answered) return;
    attempt.answer({ kind: "unavailable", reason });
    void this.endLink(reason);
  }

  /** The attempt is over without a linked phone: back to `unlinked`, nothing of it kept. */
  private async endLink(reason: string): Promise<void> {
    const attempt = this.linking;
    if (!attempt) return;
    clearTimeout(attempt.timer);
    this.linking = undefined;
    if (!attempt.answered) attempt.answer({ kind: "unavailable", reason });
    this.teardownSocket();
    const o = this.o;
    try {
      await o.store.numbers.wipeSession(o.numberId);
      await o.store.numbers.setNumberStatus(o.numberId, { status: "unlinked" }, this.now());
    } catch (error) {
      o.log.error({ numberId: o.numberId, err: error }, "web: could not record the end of a link attempt");
    }
    o.log.info({ numberId: o.numberId, reason }, "audit: link attempt ended without a linked phone");
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const o = this.o;
    const generation = ++this.generation;
    await this.credsWritten;
    const auth = await sealedAuthState(await o.baileys(), o.store.numbers, o.sealer, o.numberId);
    if (generation !== this.generation || this.closed) return;
    const socket = await o.socketFactory({ auth: auth.state, logger: quietBaileysLogger(o.log, o.numberId) });
    if (generation !== this.generation || this.closed) {
      void Promise.resolve(socket.end(undefined)).catch(() => undefined);
      return;
    }
    this.socket = socket;
    const current = () => generation === this.generation;
    const guard =
      <T>(what: string, handler: (data: T) => Promise<void>) =>
      (data: T) => {
        if (!current()) return;
        handler(data).catch((error: unknown) =>
          o.log.error({ numberId: o.numberId, err: error }, `web: handling ${what} failed`),
        );
      };
    socket.ev.on(
      "creds.update",
      guard("creds.update", async (update) => {
        Object.assign(auth.state.creds, update);
        // In order, and awaited by the next connect(): Baileys asks for a restart right after new credentials.
        const written = this.credsWritten.then(() => auth.saveCreds());
        this.credsWritten = written.catch(() => undefined);
        await written;
      }),
    );
    socket.ev.on(
      "connection.update",
      guard("connection.update", (update) => this.onConnection(socket, update)),
    );
    socket.ev.on(
      "messages.upsert",
      guard("messages.upsert", (upsert) => this.onMessages(upsert)),
    );
    socket.ev.on(
      "messages.update",
      guard("messages.update", (updates) => this.onReceipts(updates)),
    );
  }

  private async onConnection(
    socket: WebSocketLike,
    update: WebSocketEvents["connection.update"],
  ): Promise<void> {
    const o = this.o;
    const attempt = this.linking;
    if (update.qr && attempt && !attempt.answered) {
      if (attempt.request.method === "qr") {
        attempt.answer({
          kind: "qr",
          qr: update.qr,
          pngDataUrl: await QRCode.toDataURL(update.qr, { errorCorrectionLevel: "M", margin: 2 }),
          expiresAt: attempt.expiresAt,
        });
      } else {
        try {
          const code = await socket.requestPairingCode(attempt.request.phone.replace(/[^0-9]/g, ""));
          attempt.answer({ kind: "code", code, expiresAt: attempt.expiresAt });
        } catch {
          this.failLink("WhatsApp refused to give a pairing code for this phone");
        }
      }
    }
    if (update.connection === "open") {
      this.open = true;
      this.reconnectAttempts = 0;
      const now = this.now();
      const phone = socket.user?.id ? `+${digitsOf(socket.user.id)}` : null;
      await o.store.numbers.setNumberStatus(
        o.numberId,
        { status: "connected", phone, connectedAt: now },
        now,
      );
      if (attempt) {
        clearTimeout(attempt.timer);
        this.linking = undefined;
        if (!attempt.answered) attempt.answer({ kind: "already_linked" });
        o.log.info({ numberId: o.numberId, method: attempt.request.method }, "audit: number linked");
        await o.events.publish({
          type: "number.linked",
          occurredAt: now,
          dedupeKey: `number.linked:${o.numberId}:${now}`,
          data: { number_id: o.numberId, name: o.name, phone },
        });
      } else {
        o.log.info({ numberId: o.numberId }, "web: connected");
      }
      return;
    }
    if (update.connection !== "close") return;
    this.open = false;
    this.socket = undefined;
    const code = statusCodeOf(update.lastDisconnect?.error);
    if (code === LOGGED_OUT) {
      if (attempt) {
        this.failLink("the phone refused the link");
        return;
      }
      await this.loggedOut("logged_out");
      return;
    }
    if (code === RESTART_REQUIRED) {
      // Normal right after a phone scanned the code: Baileys asks for a new connection with the new session.
      await this.connect();
      return;
    }
    if (attempt) {
      this.failLink(
        attempt.answered
          ? "the link attempt ended before a phone was linked"
          : "could not reach WhatsApp to start linking",
      );
      return;
    }
    if (code === CONNECTION_REPLACED) {
      o.log.warn({ numberId: o.numberId }, "web: another client took over this session; not reconnecting");
      await o.store.numbers.setNumberStatus(o.numberId, { status: "disconnected" }, this.now());
      return;
    }
    await o.store.numbers.setNumberStatus(o.numberId, { status: "disconnected" }, this.now());
    this.scheduleReconnect(code);
  }

  private scheduleReconnect(code: number | undefined): void {
    if (this.closed) return;
    const o = this.o;
    this.reconnectAttempts++;
    const delay = backoffDelay(this.reconnectAttempts, o.reconnectBaseMs, o.reconnectMaxMs);
    o.log.info({ numberId: o.numberId, code, delayMs: delay }, "web: disconnected, reconnecting");
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      this.connect().catch((error: unknown) => {
        o.log.warn({ numberId: o.numberId, err: error }, "web: reconnecting failed");
        this.scheduleReconnect(undefined);
      });
    }, delay);
    this.reconnectTimer.unref();
  }

  /** The phone removed this linked device: the session is worthless; wipe it and say so. */
  private async loggedOut(reason: string): Promise<void> {
    const o = this.o;
    this.teardownSocket();
    const now = this.now();
    await o.store.numbers.wipeSession(o.numberId);
    await o.store.numbers.setNumberStatus(o.numberId, { status: "unlinked" }, now);
    o.log.warn({ numberId: o.numberId, reason }, "audit: number unlinked");
    await o.events.publish({
      type: "number.unlinked",
      occurredAt: now,
      dedupeKey: `number.unlinked:${o.numberId}:${now}`,
      data: { number_id: o.numberId, name: o.name, reason },
    });
  }

  /** Every message Baileys hands over, live (`notify`) or synced after a reconnection (`append`). */
  private async onMessages(upsert: WebSocketEvents["messages.upsert"]): Promise<void> {
    const o = this.o;
    const now = this.now();
    const inbound: InboundMessage[] = [];
    const media: NewMedia[] = [];
    for (const m of upsert.messages) {
      const key = m.key as typeof m.key & { remoteJidAlt?: string | null };
      if (key.fromMe || !key.id) continue;
      // One-to-one chats only (not groups, status updates or newsletters); with LIDs the phone number's jid
      // comes as the alternative.
      const jid = [key.remoteJid, key.remoteJidAlt].find(
        (j) => typeof j === "string" && j.endsWith("@s.whatsapp.net"),
      );
      if (!jid) continue;
      // In Meta's shape, as the inbox lists every message; WhatsApp's own signalling is not a message.
      const content = webInboundContent(m.message, key.id);
      if (!content) continue;
      inbound.push({
        id: key.id,
        from: `+${digitsOf(jid)}`,
        type: content.type,
        text: content.text,
        sentAt: secondsToMs(m.messageTimestamp, now),
        // What a receiver needs, not Baileys' whole record (which can carry media keys). `chat`: the chat's own jid
        // (a LID for some contacts), which a read receipt must name.
        raw: {
          id: key.id,
          from: digitsOf(jid),
          push_name: m.pushName ?? null,
          upsert: upsert.type,
          chat: key.remoteJid ?? jid,
        },
        numberId: o.numberId,
        content: content.content,
        mediaId: content.mediaId,
        profileName: m.pushName ?? null,
      });
      // The medium is fetched again from WhatsApp when asked for (GET /v1/media/:id): what that takes is sealed.
      const source = content.mediaId ? webMediaSource(m.message) : undefined;
      if (content.mediaId && source) {
        const id = uuidv7(now);
        media.push({
          id,
          subject: null,
          numberId: o.numberId,
          direction: "in",
          providerMediaId: content.mediaId,
          mimeType: source.mimeType ?? null,
          size: source.fileLength ?? null,
          sha256: source.fileSha256 ?? null,
          messageId: key.id,
          createdAt: now,
          source: sealWebMediaSource(o.sealer, id, source),
        });
      }
    }
    if (inbound.length === 0) return;
    // Registered before the message is committed: a message the inbox lists always has its medium fetchable.
    await o.store.media.registerInboundMedia(media);
    // Committed before processed: a crash in between is recovered at the next start (inbound/pipeline.ts).
    await o.store.recordWebhook([], inbound, now);
    await o.inbound.process(inbound, [], now);
  }

  /** Receipts of our own messages: sent, delivered, read (or an error). */
  private async onReceipts(updates: WebSocketEvents["messages.update"]): Promise<void> {
    const now = this.now();
    const statuses: StatusUpdate[] = [];
    for (const u of updates) {
      const status = typeof u.update.status === "number" ? RECEIPTS[u.update.status] : undefined;
      if (!u.key.fromMe || !u.key.id || !status) continue;
      statuses.push({
        providerMessageId: u.key.id,
        status,
        at: now,
        ...(status === "failed"
          ? { error: { code: "web_error", message: "WhatsApp reported an error" } }
          : {}),
      });
    }
    if (statuses.length === 0) return;
    await this.o.store.recordWebhook(statuses, [], now);
    await publishStatusEvents(this.o.events, this.o.store, statuses);
  }
}
