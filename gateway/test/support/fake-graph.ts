import { createHmac } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { createFakeGraphMedia, type FakeGraphMedia } from "./fake-graph-media.js";
import { invalidMessageBody } from "./graph-message-shapes.js";

// A stand-in for Meta's Graph API on 127.0.0.1, real HTTP. It records every request, answers like the Cloud
// API (wamid ids, Meta's error envelope), can be scripted call by call, delays answers on demand and, like
// Meta, posts signed status webhooks back to the gateway (retrying until they are acknowledged). A request
// counts as accepted when it arrives, whether or not the answer reaches the client: that is what makes it a
// fair judge of crash windows. Reused by the broadcast tests and benchmarks.

export interface RecordedRequest {
  readonly at: number;
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingMessage["headers"];
  readonly body: unknown;
  /** The wamid given when the request was accepted (2xx), undefined otherwise. */
  readonly wamid: string | undefined;
  /** Why the body was refused as Meta would (error #100), undefined when its shape was valid. */
  readonly invalid?: string | undefined;
}

export type ScriptedAnswer =
  | { status: number; body?: unknown; delayMs?: number }
  /**
   * Close the connection without answering, after the request was read: the sender cannot know the outcome.
   * The message counts as accepted (Meta got it, the answer was lost) unless `accepted: false`.
   */
  | { hangUp: true; accepted?: boolean; delayMs?: number };

export interface StatusWebhookOptions {
  /** The gateway's `/webhooks/whatsapp` URL. */
  url: string;
  appSecret: string;
  /** Statuses posted for each accepted message, in this order (default: ["sent"]). */
  statuses?: Array<"sent" | "delivered" | "read">;
  retryEveryMs?: number;
  /** Stop retrying one delivery after this long. */
  giveUpAfterMs?: number;
}

export interface FakeGraphOptions {
  /** Path prefix of the API version, e.g. "v21.0". */
  version?: string;
  /** When set, requests without `Authorization: Bearer <accessToken>` get Meta's error 190. */
  accessToken?: string;
  /** Delay before every answer (scripted answers may add their own). */
  latencyMs?: number;
  statusWebhook?: StatusWebhookOptions;
  /** Address to listen on (default 127.0.0.1; the Debian box reaches the host on its veth address). */
  host?: string;
}

/** A template as Meta's `GET /{waba-id}/message_templates` lists it. */
export interface FakeTemplate {
  name: string;
  language: string;
  status: string;
  category?: string;
  components: Array<Record<string, unknown>>;
  id?: string;
}

export interface FakeGraph {
  /** Base URL including the version: what GRAPH_API_BASE_URL is set to. */
  readonly baseUrl: string;
  readonly port: number;
  readonly requests: RecordedRequest[];
  /** Media: uploads as received (streamed, counted, hashed), media by id, downloads (fake-graph-media.ts). */
  readonly media: FakeGraphMedia;
  /** Bodies of the message requests that were accepted (read receipts are not messages: see readReceipts). */
  accepted(): Array<Record<string, unknown>>;
  /** Read receipts received (`status: read`), with the phone number id whose endpoint they were posted to. */
  readReceipts(): Array<{ phoneNumberId: string; body: Record<string, unknown> }>;
  /** Answers for the next calls, in order; when exhausted, calls are accepted normally. */
  script(...answers: ScriptedAnswer[]): void;
  /** Drops the scripted answers not used yet: calls are accepted normally again. */
  clearScript(): void;
  setLatency(ms: number): void;
  /** Signs and posts a webhook payload to the configured gateway URL; resolves with the HTTP status. */
  postWebhook(payload: unknown): Promise<number>;
  /** The templates `GET /{wabaId}/message_templates` lists (paged like Meta: `limit`, `after`, `paging.next`). */
  setTemplates(wabaId: string, templates: FakeTemplate[]): void;
  /** Answers every template listing with this instead (an outage, a token without permission); undefined: normal. */
  failTemplates(answer: { status: number; body?: unknown } | undefined): void;
  /** Template listing requests received (one per page; not in `requests`). */
  templateRequests(): RecordedRequest[];
  /** Resolves once `count` message requests have been received. */
  waitForRequests(count: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** Meta's error envelope for a given error code. */
export function graphError(
  code: number,
  httpStatus = 400,
  title = `(#${code}) error`,
  details = title,
): ScriptedAnswer {
  return {
    status: httpStatus,
    body: {
      error: {
        message: title,
        type: "OAuthException",
        code,
        error_data: { details },
        fbtrace_id: "Afake",
      },
    },
  };
}

export function signWebhook(appSecret: string, body: string): string {
  return `sha256=${createHmac("sha256", appSecret).update(body).digest("hex")}`;
}

/** Meta's webhook envelope around one change's `value`, for the number `phoneNumberId`. */
function metaNotification(
  value: Record<string, unknown>,
  phoneNumberId = "106540352242922",
): Record<string, unknown> {
  return {
    object: "whatsapp_business_account",
    entry: [
      {
        id: "102290129340398",
        changes: [
          {
            field: "messages",
            value: {
              messaging_product: "whatsapp",
              metadata: { display_phone_number: "15550783881", phone_number_id: phoneNumberId },
              ...value,
            },
          },
        ],
      },
    ],
  };
}

/** A `statuses` notification in Meta's envelope. */
export function statusNotification(
  statuses: Array<{
    id: string;
    status: string;
    recipient_id?: string;
    biz_opaque_callback_data?: string;
    errors?: unknown[];
  }>,
): Record<string, unknown> {
  const timestamp = String(Math.floor(Date.now() / 1000));
  return metaNotification({
    statuses: statuses.map((s) => ({ timestamp, recipient_id: "14155550123", ...s })),
  });
}

/** An inbound text message notification in Meta's envelope. */
export function inboundNotification(
  messages: Array<{ id: string; from: string; text: string }>,
): Record<string, unknown> {
  return inboundMessagesNotification(
    messages.map((m) => ({ from: m.from, id: m.id, type: "text", text: { body: m.text } })),
  );
}

/**
 * Inbound messages of any type in Meta's envelope: each item is a message object as Meta documents it (`from`,
 * `id`, `timestamp` and `type` are filled in when absent), with the senders' profiles beside them.
 */
export function inboundMessagesNotification(
  messages: Array<Record<string, unknown> & { from: string; type: string }>,
  options: { phoneNumberId?: string; profileName?: string } = {},
): Record<string, unknown> {
  const timestamp = String(Math.floor(Date.now() / 1000));
  const senders = [...new Set(messages.map((m) => m.from))];
  return metaNotification(
    {
      contacts: senders.map((from) => ({ profile: { name: options.profileName ?? "Test" }, wa_id: from })),
      messages: messages.map((m, i) => ({ id: `wamid.inbound${Date.now()}${i}`, timestamp, ...m })),
    },
    options.phoneNumberId,
  );
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

export async function startFakeGraph(options: FakeGraphOptions = {}): Promise<FakeGraph> {
  const version = options.version ?? "v21.0";
  const requests: RecordedRequest[] = [];
  const scripted: ScriptedAnswer[] = [];
  const waiters: Array<{ count: number; resolve: () => void }> = [];
  let latencyMs = options.latencyMs ?? 0;
  let counter = 0;
  let closed = false;
  const webhookTasks = new Set<Promise<void>>();

  const messagesPath = new RegExp(`^/${version.replace(".", "\\.")}/([0-9]+)/messages$`);
  const templatesPath = new RegExp(`^/${version.replace(".", "\\.")}/([0-9]+)/message_templates$`);
  const templatesByWaba = new Map<string, FakeTemplate[]>();
  let templatesFailure: { status: number; body?: unknown } | undefined;
  /** Kept apart from `requests`, which holds the message sends the other tests count. */
  const templateRequests: RecordedRequest[] = [];

  async function postWebhook(payload: unknown): Promise<number> {
    const hook = options.statusWebhook;
    if (!hook) throw new Error("fake graph: no statusWebhook configured");
    const body = JSON.stringify(payload);
    const response = await fetch(hook.url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-hub-signature-256": signWebhook(hook.appSecret, body),
      },
      body,
    });
    await response.arrayBuffer();
    return response.status;
  }

  function deliverStatuses(wamid: string, request: Record<string, unknown>): void {
    const hook = options.statusWebhook;
    if (!hook) return;
    const task = (async () => {
      const deadline = Date.now() + (hook.giveUpAfterMs ?? 60_000);
      for (const status of hook.statuses ?? ["sent"]) {
        const payload = statusNotification([
          {
            id: wamid,
            status,
            recipient_id: String(request.to ?? ""),
            ...(typeof request.biz_opaque_callback_data === "string"
              ? { biz_opaque_callback_data: request.biz_opaque_callback_data }
              : {}),
          },
        ]);
        while (!closed && Date.now() < deadline) {
          const status = await postWebhook(payload).catch(() => 0);
          if (status === 200) break;
          await sleep(hook.retryEveryMs ?? 100);
        }
      }
    })();
    webhookTasks.add(task);
    void task.finally(() => webhookTasks.delete(task));
  }

  function messageRequestCount(): number {
    return requests.filter((r) => messagesPath.test(r.path)).length;
  }

  function sendJson(res: ServerResponse, status: number, value: unknown): void {
    const text = JSON.stringify(value);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
  }

  /** Meta's template listing: cursor paging, `fields` honoured, the token checked like on sends. */
  function listTemplates(req: IncomingMessage, res: ServerResponse, wabaId: string) {
    const url = new URL(req.url ?? "/", "http://fake");
    templateRequests.push({
      at: Date.now(),
      method: req.method ?? "",
      path: url.pathname,
      headers: req.headers,
      body: Object.fromEntries(url.searchParams),
      wamid: undefined,
    });
    if (options.accessToken && req.headers.authorization !== `Bearer ${options.accessToken}`) {
      const error = graphError(190, 401, "(#190) Invalid OAuth access token") as {
        status: number;
        body: unknown;
      };
      return sendJson(res, error.status, error.body);
    }
    if (templatesFailure) return sendJson(res, templatesFailure.status, templatesFailure.body ?? {});
    const all = templatesByWaba.get(wabaId);
    if (!all) return sendJson(res, 400, { error: { message: "Unsupported get request", code: 100 } });
    const limit = Math.min(Number(url.searchParams.get("limit") ?? 25) || 25, 1000);
    const after = url.searchParams.get("after");
    const start = after ? Number(Buffer.from(after, "base64url").toString("utf8")) : 0;
    const fields = (url.searchParams.get("fields") ?? "name,status,id").split(",");
    const data = all.slice(start, start + limit).map((t, i) => {
      const full: Record<string, unknown> = { ...t, id: t.id ?? String(1_000_000 + start + i) };
      return Object.fromEntries(Object.entries(full).filter(([k]) => k === "id" || fields.includes(k)));
    });
    const cursor = (n: number) => Buffer.from(String(n), "utf8").toString("base64url");
    const more = start + limit < all.length;
    const next = new URL(url.pathname, `http://${req.headers.host}`);
    next.searchParams.set("limit", String(limit));
    next.searchParams.set("after", cursor(start + limit));
    sendJson(res, 200, {
      data,
      paging: {
        cursors: { before: cursor(start), after: cursor(start + data.length) },
        ...(more ? { next: next.toString() } : {}),
      },
    });
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Media requests stream (a 100 MB upload is never read whole into a string).
    if (await media.handle(req, res, (req.url ?? "/").split("?")[0] ?? "/")) return;
    const raw = await readBody(req);
    const templatesMatch =
      req.method === "GET" ? templatesPath.exec((req.url ?? "/").split("?")[0] ?? "/") : null;
    if (templatesMatch?.[1]) return listTemplates(req, res, templatesMatch[1]);
    let body: unknown;
    try {
      body = raw ? JSON.parse(raw) : undefined;
    } catch {
      body = raw;
    }
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    const isMessages = req.method === "POST" && messagesPath.test(path);
    // Meta answers a read receipt `{"success": true}`: no message id, and no status webhooks follow.
    const isReadReceipt = isMessages && (body as { status?: unknown } | undefined)?.status === "read";
    // Like Meta, a body that is not a valid message object is refused whatever else was scripted.
    const invalid = isMessages ? invalidMessageBody(body) : undefined;
    let answer: ScriptedAnswer | undefined = isMessages && !invalid ? scripted.shift() : undefined;
    if (!isMessages) answer = { status: 404, body: { error: { message: "Unknown path", code: 100 } } };
    else if (options.accessToken && req.headers.authorization !== `Bearer ${options.accessToken}`) {
      answer = graphError(190, 401, "(#190) Invalid OAuth access token");
    } else if (invalid) {
      answer = graphError(100, 400, "(#100) Invalid parameter", invalid);
    }
    answer ??= { status: 200 };
    const accepted =
      "hangUp" in answer ? answer.accepted !== false : answer.status >= 200 && answer.status < 300;
    const wamid = accepted && !isReadReceipt ? `wamid.fake${String(++counter).padStart(8, "0")}` : undefined;
    requests.push({
      at: Date.now(),
      method: req.method ?? "",
      path,
      headers: req.headers,
      body,
      wamid,
      invalid,
    });
    for (const waiter of [...waiters]) {
      if (messageRequestCount() >= waiter.count) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
    const delay = latencyMs + (answer.delayMs ?? 0);
    if (delay > 0) await sleep(delay);
    // Like Meta, statuses follow the answer (whether or not the answer reached the sender).
    if (wamid) deliverStatuses(wamid, body as Record<string, unknown>);
    if ("hangUp" in answer) {
      req.socket.destroy();
      return;
    }
    const responseBody =
      answer.body ??
      (isReadReceipt && accepted
        ? { success: true }
        : wamid
          ? {
              messaging_product: "whatsapp",
              contacts: [
                {
                  input: String((body as { to?: unknown })?.to ?? ""),
                  wa_id: String((body as { to?: unknown })?.to ?? ""),
                },
              ],
              messages: [{ id: wamid }],
            }
          : {});
    const text = JSON.stringify(responseBody);
    res.writeHead(answer.status, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(text),
    });
    res.end(text);
  }

  let origin = "";
  const media = createFakeGraphMedia({
    version,
    origin: () => origin,
    ...(options.accessToken ? { accessToken: options.accessToken } : {}),
  });

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  server.keepAliveTimeout = 60_000;
  const host = options.host ?? "127.0.0.1";
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const port = (server.address() as AddressInfo).port;
  origin = `http://${host}:${port}`;

  return {
    baseUrl: `http://${host}:${port}/${version}`,
    port,
    requests,
    media: media.state,
    accepted: () =>
      requests.filter((r) => r.wamid !== undefined).map((r) => r.body as Record<string, unknown>),
    readReceipts: () =>
      requests
        .filter(
          (r) =>
            r.method === "POST" &&
            messagesPath.test(r.path) &&
            (r.body as { status?: unknown } | undefined)?.status === "read",
        )
        .map((r) => ({
          phoneNumberId: messagesPath.exec(r.path)?.[1] ?? "",
          body: r.body as Record<string, unknown>,
        })),
    script: (...answers) => void scripted.push(...answers),
    clearScript: () => void scripted.splice(0),
    setLatency: (ms) => {
      latencyMs = ms;
    },
    postWebhook,
    setTemplates: (wabaId, templates) => void templatesByWaba.set(wabaId, templates),
    failTemplates: (answer) => {
      templatesFailure = answer;
    },
    templateRequests: () => [...templateRequests],
    waitForRequests(count, timeoutMs = 30_000) {
      if (messageRequestCount() >= count) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const waiter = { count, resolve };
        waiters.push(waiter);
        setTimeout(() => {
          const i = waiters.indexOf(waiter);
          if (i >= 0) {
            waiters.splice(i, 1);
            reject(
              new Error(`fake graph: ${messageRequestCount()} of ${count} requests after ${timeoutMs} ms`),
            );
          }
        }, timeoutMs).unref();
      });
    },
    async close() {
      closed = true;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.allSettled([...webhookTasks]);
    },
  };
}
