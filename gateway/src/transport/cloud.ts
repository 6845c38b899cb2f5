import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { createBoundedResolver } from "../dns/bounded-resolver.js";
import type { OutgoingMessage } from "../messages.js";
import { toProviderNumber } from "../phone.js";
import { classifyGraphError, classifyNetworkError, type GraphErrorBody } from "./graph-errors.js";
import type { ReadReceipt, SendContext, SendOutcome, Transport } from "./transport.js";

export interface CloudTransportOptions {
  /** Includes the API version, e.g. https://graph.facebook.com/v21.0 */
  baseUrl: string;
  phoneNumberId: string;
  accessToken: string;
  /** Name servers for the Graph API host instead of the system's (tests). */
  dnsServers?: readonly string[];
}

/**
 * The object of the message's type, as Meta documents it. The request schemas (http/outbound-schemas.ts) already
 * admit only Meta's fields, so most objects go as they were accepted; what is ours (the template's language as a
 * plain code, `from_me` on a mapped reference) is turned into Meta's shape here.
 */
function typeObject(message: OutgoingMessage): unknown {
  switch (message.type) {
    case "text":
      return { body: message.text.body, preview_url: message.text.preview_url ?? false };
    case "template": {
      const { name, language, components } = message.template;
      return { name, language: { code: language }, ...(components ? { components } : {}) };
    }
    case "reaction":
      return { message_id: message.reaction.message_id, emoji: message.reaction.emoji };
    case "image":
      return message.image;
    case "video":
      return message.video;
    case "audio":
      return message.audio;
    case "document":
      return message.document;
    case "sticker":
      return message.sticker;
    case "location":
      return message.location;
    case "contacts":
      return message.contacts;
    case "interactive":
      return message.interactive;
  }
}

/** The request body of Meta's `POST /{phone-number-id}/messages`. */
export function graphRequestBody(message: OutgoingMessage, messageId: string): Record<string, unknown> {
  return {
    messaging_product: "whatsapp",
    recipient_type: "individual",
    to: toProviderNumber(message.to),
    biz_opaque_callback_data: messageId,
    ...(message.context ? { context: { message_id: message.context.message_id } } : {}),
    type: message.type,
    [message.type]: typeObject(message),
  };
}

/** Meta's read receipt: `status: read` on the inbound message's wamid, to the number's messages endpoint. */
export function graphReadReceiptBody(messageId: string): Record<string, unknown> {
  return { messaging_product: "whatsapp", status: "read", message_id: messageId };
}

/** Graph API answers are a few hundred bytes; anything larger is not read further. */
const MAX_ANSWER_BYTES = 64 * 1024;
/** Without an answer to the TCP handshake by then, nothing was sent: a plain retry (undici's default too). */
const CONNECT_TIMEOUT_MS = 10_000;
/**
 * The Graph API host is looked up for each new connection through c-ares, not on libuv's thread pool, and gives
 * up within half the connect timeout (see dns/bounded-resolver.ts).
 */
const LOOKUP_DEADLINE_MS = CONNECT_TIMEOUT_MS / 2;
/** Idle keep-alive connections close before a server's usual idle timeout (Node honours a Keep-Alive hint). */
const IDLE_SOCKET_MS = 4_000;

/**
 * Sends with `node:http(s)` and one keep-alive agent, not `fetch`. At 1,000 msg/s undici's fetch (WHATWG
 * Request/Response/Headers, a web stream per body) cost about 60 % more CPU per message and allocated so much
 * that V8 promoted ~20 MB/s to the old generation: the gateway peaked at 220-245 MB RSS and fell short of
 * 1,000 msg/s at 50 ms latency. The same sends over `node:http` peak at ~140 MB and keep 1,000 msg/s.
 */
export function createCloudTransport(options: CloudTransportOptions): Transport {
  const url = new URL(`${options.baseUrl}/${encodeURIComponent(options.phoneNumberId)}/messages`);
  const secure = url.protocol === "https:";
  const resolver = createBoundedResolver({
    deadlineMs: LOOKUP_DEADLINE_MS,
    maxInFlightPerSubject: 16,
    ...(options.dnsServers ? { servers: options.dnsServers } : {}),
  });
  const agentOptions = {
    keepAlive: true,
    scheduling: "lifo" as const,
    timeout: IDLE_SOCKET_MS,
    lookup: resolver.lookupFor("graph-api"),
  };
  const agent = secure ? new HttpsAgent(agentOptions) : new HttpAgent(agentOptions);
  const request = secure ? httpsRequest : httpRequest;
  const authorization = `Bearer ${options.accessToken}`;

  function answer(status: number, raw: string | undefined): SendOutcome {
    let body: unknown;
    try {
      body = raw === undefined ? undefined : JSON.parse(raw);
    } catch {
      body = undefined;
    }
    if (status >= 200 && status < 300) {
      const id = (body as { messages?: Array<{ id?: unknown }> } | undefined)?.messages?.[0]?.id;
      return { kind: "accepted", providerMessageId: typeof id === "string" ? id : null };
    }
    // Redirects are never followed: a 3xx is an answer like any other non-2xx.
    return classifyGraphError(status, body as GraphErrorBody | undefined);
  }

  /** One POST to the number's messages endpoint: a message or a read receipt. */
  function post(payload: string, signal: AbortSignal): Promise<SendOutcome> {
    const context = { signal };
    return new Promise<SendOutcome>((resolve) => {
      let settled = false;
      let connectTimer: NodeJS.Timeout | undefined;
      const settle = (outcome: SendOutcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(connectTimer);
        resolve(outcome);
      };
      // The same classification as fetch's errors: an abort is the signal's reason (the send timeout or
      // shutdown), a socket error is the cause of a failed request.
      const failed = (error: unknown) =>
        settle(
          classifyNetworkError(
            context.signal.aborted ? context.signal.reason : { cause: error, name: "network" },
          ),
        );
      const req = request(
        url,
        {
          method: "POST",
          agent,
          signal: context.signal,
          headers: {
            authorization,
            "content-type": "application/json",
            "content-length": Buffer.byteLength(payload),
          },
        },
        (res: IncomingMessage) => {
          const status = res.statusCode ?? 0;
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (chunk: Buffer) => {
            size += chunk.length;
            if (size <= MAX_ANSWER_BYTES) chunks.push(chunk);
          });
          res.on("end", () =>
            settle(
              answer(status, size <= MAX_ANSWER_BYTES ? Buffer.concat(chunks).toString("utf8") : undefined),
            ),
          );
          // The status line arrived: the answer is that status even when its body is cut off (as with fetch,
          // whose body read failed then): a 2xx means Meta took the message, without telling its wamid.
          const cutOff = () => settle(answer(status, undefined));
          res.on("error", cutOff);
          res.on("close", () => {
            if (!res.complete) cutOff();
          });
        },
      );
      req.on("error", failed);
      req.on("socket", (socket) => {
        if (!socket.connecting) return;
        connectTimer = setTimeout(
          () => req.destroy(Object.assign(new Error("connect timed out"), { code: "CONNECT_TIMEOUT" })),
          CONNECT_TIMEOUT_MS,
        );
        socket.once(secure ? "secureConnect" : "connect", () => clearTimeout(connectTimer));
      });
      req.end(payload);
    });
  }

  return {
    name: "cloud",
    send(message: OutgoingMessage, context: SendContext): Promise<SendOutcome> {
      return post(JSON.stringify(graphRequestBody(message, context.messageId)), context.signal);
    },
    markRead(receipt: ReadReceipt): Promise<SendOutcome> {
      return post(JSON.stringify(graphReadReceiptBody(receipt.messageId)), receipt.signal);
    },
    async close() {
      agent.destroy();
    },
  };
}
