import type { FastifyBaseLogger } from "fastify";
import type { Sealer } from "../../crypto/sealer.js";
import type { EventSink } from "../../events.js";
import type { LinkAnswer, LinkRequest, WebNumbersControl } from "../../http/numbers.js";
import type { InboundPipeline } from "../../inbound/pipeline.js";
import type { OutgoingMessage } from "../../messages.js";
import type { NumberRecord } from "../../store/numbers.js";
import type { Store } from "../../store/store.js";
import type { ReadReceipt, SendContext, SendOutcome, Transport } from "../transport.js";
import { loadBaileys } from "./baileys.js";
import { baileysSocketFactory } from "./baileys-socket.js";
import type { MediaLinkFetcher } from "./session.js";
import { WebSession } from "./session.js";
import type { SocketFactory } from "./socket.js";

// The web numbers of this gateway: one session each, started at start for every linked number, and the web side of
// the outbox. A message to a number that is not linked waits (`unlinkedWaitMs` after the number lost its link) and
// then fails with `number_unlinked`: never dropped silently.

export interface WebNumbersOptions {
  store: Store;
  sealer: Sealer;
  log: FastifyBaseLogger;
  events: EventSink;
  inbound: InboundPipeline;
  socketFactory?: SocketFactory;
  linkTimeoutMs: number;
  firstAnswerTimeoutMs?: number;
  unlinkedWaitMs: number;
  reconnectBaseMs: number;
  reconnectMaxMs: number;
  /** Fetches a medium a web number sends by link, through the SSRF guard (media/link-fetch.ts). */
  fetchLink?: MediaLinkFetcher;
  now?: () => number;
}

/** Retry a message of an unlinked number at least this often while it waits. */
const UNLINKED_RETRY_MS = 60_000;

export class WebNumbers implements WebNumbersControl, Transport {
  readonly name = "web";
  private readonly sessions = new Map<string, WebSession>();
  private readonly now: () => number;
  private stopped = false;

  constructor(private readonly o: WebNumbersOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Connects every linked web number with its stored session. */
  async start(): Promise<void> {
    for (const number of await this.o.store.numbers.listNumbers()) {
      if (number.transport !== "web") continue;
      if (number.status === "linking") {
        // A link attempt the last stop interrupted: nothing of it is usable.
        await this.o.store.numbers.wipeSession(number.id);
        await this.o.store.numbers.setNumberStatus(number.id, { status: "unlinked" }, this.now());
      } else if (number.status === "connected" || number.status === "disconnected") {
        this.resume(number);
      }
    }
  }

  private session(number: NumberRecord): WebSession {
    let session = this.sessions.get(number.id);
    if (!session) {
      const o = this.o;
      session = new WebSession({
        numberId: number.id,
        name: number.name,
        store: o.store,
        sealer: o.sealer,
        log: o.log,
        events: o.events,
        inbound: o.inbound,
        socketFactory: o.socketFactory ?? baileysSocketFactory,
        baileys: loadBaileys,
        linkTimeoutMs: o.linkTimeoutMs,
        firstAnswerTimeoutMs: o.firstAnswerTimeoutMs ?? 20_000,
        reconnectBaseMs: o.reconnectBaseMs,
        reconnectMaxMs: o.reconnectMaxMs,
        ...(o.fetchLink ? { fetchLink: o.fetchLink } : {}),
        ...(o.now ? { now: o.now } : {}),
      });
      this.sessions.set(number.id, session);
    }
    return session;
  }

  private resume(number: NumberRecord): void {
    this.session(number)
      .resume()
      .catch((error: unknown) =>
        this.o.log.error({ numberId: number.id, err: error }, "web: could not start a linked number"),
      );
  }

  async link(number: NumberRecord, request: LinkRequest): Promise<LinkAnswer> {
    if (this.stopped) return { kind: "unavailable", reason: "the gateway is stopping" };
    const session = this.session(number);
    if (session.linkInProgress) return { kind: "busy" };
    if (number.status === "connected" || number.status === "disconnected") return { kind: "already_linked" };
    return session.link(request);
  }

  async forget(numberId: string): Promise<void> {
    const session = this.sessions.get(numberId);
    this.sessions.delete(numberId);
    await session?.forget();
  }

  async send(message: OutgoingMessage, context: SendContext): Promise<SendOutcome> {
    const number = context.numberId ? this.o.store.numbers.cachedNumber(context.numberId) : undefined;
    if (!number)
      return { kind: "permanent", code: "number_deleted", message: "the sending number no longer exists" };
    if (number.status === "unlinked" || number.status === "linking") {
      const waited = this.now() - number.statusChangedAt;
      if (waited >= this.o.unlinkedWaitMs) {
        return { kind: "permanent", code: "number_unlinked", message: "the sending number is not linked" };
      }
      return {
        kind: "retryable",
        code: "number_unlinked",
        message: "the sending number is not linked; waiting for an admin to link it again",
        minDelayMs: Math.min(UNLINKED_RETRY_MS, this.o.unlinkedWaitMs - waited),
      };
    }
    // Linked, but started by another process after this one: connect it now and retry shortly.
    if (!this.sessions.has(number.id) && !this.stopped) this.resume(number);
    return this.session(number).send(message);
  }

  async markRead(receipt: ReadReceipt): Promise<SendOutcome> {
    const number = receipt.numberId ? this.o.store.numbers.cachedNumber(receipt.numberId) : undefined;
    if (!number)
      return { kind: "permanent", code: "number_deleted", message: "the receiving number no longer exists" };
    if (number.status === "unlinked" || number.status === "linking")
      return { kind: "retryable", code: "number_unlinked", message: "the receiving number is not linked" };
    if (!this.sessions.has(number.id) && !this.stopped) this.resume(number);
    // The chat as the message came in (a LID chat is named by its LID); by phone number for older rows.
    const stored = await this.o.store.inbox.getInbound(receipt.messageId);
    const chat = (stored?.raw as { chat?: unknown } | undefined)?.chat;
    const jid = typeof chat === "string" ? chat : `${receipt.contact.replace(/[^0-9]/g, "")}@s.whatsapp.net`;
    return this.session(number).markRead(jid, receipt.messageId);
  }

  async close(): Promise<void> {
    this.stopped = true;
    await Promise.all([...this.sessions.values()].map((s) => s.close()));
    this.sessions.clear();
  }
}
