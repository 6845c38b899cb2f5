import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from "fastify";
import type { Config } from "./config.js";
import { sealerFor } from "./crypto/sealer.js";
import { type EventSink, noEvents } from "./events.js";
import { adminRoutes } from "./http/admin.js";
import { apiReferenceRoutes } from "./http/api-reference.js";
import { createScopeGuards } from "./http/auth.js";
import { broadcastRoutes } from "./http/broadcasts.js";
import { installErrorHandling } from "./http/errors.js";
import { inboxRoutes, type ReadReceiptSender } from "./http/inbox.js";
import { mediaRoutes } from "./http/media.js";
import { messagesRoutes } from "./http/messages.js";
import { metaWebhookRoutes } from "./http/meta-webhook.js";
import { numbersRoutes, type WebNumbersControl } from "./http/numbers.js";
import { openApiRoutes, recordRoutes } from "./http/openapi.js";
import { opsRoutes } from "./http/ops.js";
import { otpRoutes } from "./http/otp.js";
import { repliesRoutes } from "./http/replies.js";
import { templatesRoutes } from "./http/templates.js";
import { installZodValidation } from "./http/validation.js";
import { webhooksRoutes } from "./http/webhooks.js";
import { createInboundPipeline, type InboundPipeline } from "./inbound/pipeline.js";
import { loggerOptions } from "./log.js";
import { createGraphMediaClient } from "./media/graph-media.js";
import { createMetrics, type Metrics } from "./metrics.js";
import { authenticationTemplate, createOtpService } from "./otp/service.js";
import { createAutoReplier } from "./replies/auto-replier.js";
import type { Store } from "./store/store.js";
import { createTemplateCatalog, type TemplateCatalog } from "./templates/catalog.js";
import { templateSources } from "./templates/sources.js";
import { type HostResolver, webhookHostResolver, webhookUrlPolicy } from "./webhooks/ssrf.js";

export interface AppDeps {
  store: Store;
  metrics?: Metrics;
  /** Called after a message is committed, to wake the outbox worker. */
  onEnqueued?: () => void;
  /** Called after a broadcast is committed, to wake the broadcast sender. */
  onBroadcastCreated?: () => void;
  /** `false` silences logs; a stream receives the JSON lines instead of stdout (the tests read them). */
  logger?: false | NodeJS.WritableStream;
  /** The clock of OTP expiry and limits (tests move it forward). */
  now?: () => number;
  /** Where producers publish events for outbound webhooks (default: dropped). */
  events?: EventSink;
  /** Wakes the webhook dispatcher after a redeliver call. */
  onWebhookQueued?: () => void;
  /** How webhook URLs' hosts are resolved for the SSRF check (tests inject their own). */
  resolveHost?: HostResolver;
  /** What happens to inbound messages once stored (default: events and automated replies, built here). */
  inbound?: InboundPipeline;
  /** Linking and forgetting web numbers (transport/web); without it link requests answer 503. */
  web?: WebNumbersControl;
  /** Regex time per inbound message for automated replies (tests shorten it). */
  replyMatchBudgetMs?: number;
  /** Sends read receipts through the number that received a message; without it marking read answers 503. */
  readReceipts?: ReadReceiptSender;
  /** Name servers for the Graph API host instead of the system's (`ip:port`; tests). */
  dnsServers?: readonly string[];
  /** Where web numbers' media are fetched instead of WhatsApp's media servers (tests). */
  webMediaOrigin?: string;
  /** The numbers' approved templates that template sends are checked against (default: read from the Graph API). */
  templates?: TemplateCatalog;
}

/**
 * Automated replies, as the gateway wires them: from the number that received, never to our own numbers, matched
 * in the background after the inbound message is stored (replies/auto-replier.ts).
 */
export function autoReplierFor(
  config: Config,
  store: Store,
  wiring: { onEnqueued: () => void; log: FastifyBaseLogger; budgetMs?: number | undefined },
) {
  return createAutoReplier({
    store,
    cooldownMs: config.REPLY_COOLDOWN_SECONDS * 1000,
    ownNumbers: config.WHATSAPP_PHONE_NUMBER_ID ? [config.WHATSAPP_PHONE_NUMBER_ID] : [],
    isWebNumber: (numberId) => store.numbers.cachedNumber(numberId)?.transport === "web",
    onEnqueued: wiring.onEnqueued,
    log: wiring.log,
    ...(wiring.budgetMs === undefined ? {} : { budgetMs: wiring.budgetMs }),
  });
}

/** Which number a Meta notification is for, by its `metadata.phone_number_id`. */
export function metaNumberRoute(config: Config, store: Store) {
  return (phoneNumberId: string | undefined) => {
    if (phoneNumberId === undefined || phoneNumberId === config.WHATSAPP_PHONE_NUMBER_ID)
      return { kind: "default" as const };
    const number = store.numbers.cachedNumberByPhoneNumberId(phoneNumberId);
    if (number) return { kind: "number" as const, numberId: number.id };
    // Without a configured id the default number is whatever Meta names (as before numbers existed).
    if (config.WHATSAPP_PHONE_NUMBER_ID === undefined) return { kind: "default" as const };
    return { kind: "unknown" as const };
  };
}

/** API routes take small JSON bodies; only Meta's webhook route raises its own limit. */
const API_BODY_LIMIT = 64 * 1024;
const MAX_HEADERS = 100;

export async function buildApp(config: Config, deps: AppDeps): Promise<FastifyInstance> {
  const metrics = deps.metrics ?? createMetrics();
  const app = Fastify({
    logger:
      deps.logger === false
        ? false
        : { ...loggerOptions(config.LOG_LEVEL), ...(deps.logger ? { stream: deps.logger } : {}) },
    bodyLimit: API_BODY_LIMIT,
    trustProxy:
      config.TRUST_PROXY === "true" ? true : config.TRUST_PROXY === "loopback" ? "127.0.0.1,::1" : false,
    requestIdHeader: false,
    // Requests are logged by our onResponse hook, with the path only (no query string, no headers).
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
    forceCloseConnections: "idle",
    http: { maxHeaderSize: 16 * 1024 },
    routerOptions: { maxParamLength: 200 },
    // Node answers header floods and malformed requests itself, with no body; answer them in our JSON shape.
    clientErrorHandler: (error, socket) => {
      const code = (error as NodeJS.ErrnoException).code;
      const status = code === "HPE_HEADER_OVERFLOW" ? 431 : 400;
      const body = JSON.stringify({
        error: {
          code: status === 431 ? "headers_too_large" : "bad_request",
          message: status === 431 ? "request headers are too large" : "malformed request",
        },
      });
      if (socket.writable) {
        socket.end(
          `HTTP/1.1 ${status} ${status === 431 ? "Request Header Fields Too Large" : "Bad Request"}\r\n` +
            `Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
            `Connection: close\r\n\r\n${body}`,
        );
      } else {
        socket.destroy();
      }
    },
  });
  app.server.maxHeadersCount = MAX_HEADERS + 1;

  app.decorateRequest("principal", null);
  // JSON only: anything else (text/plain, forms) is a 415 before any handler runs.
  app.removeContentTypeParser("text/plain");
  installZodValidation(app);
  installErrorHandling(app);
  // Before any route: GET /v1/openapi.json describes every route registered from here on.
  const routes = recordRoutes(app);

  app.addHook("onRequest", async (request, reply) => {
    if (request.raw.rawHeaders.length / 2 > MAX_HEADERS) {
      return reply
        .status(431)
        .send({ error: { code: "headers_too_large", message: `at most ${MAX_HEADERS} request headers` } });
    }
  });
  app.addHook("onResponse", async (request, reply) => {
    const route = request.routeOptions.url ?? "unmatched";
    metrics.httpRequests.inc({ method: request.method, route, status: reply.statusCode });
    metrics.httpDuration.observe({ route }, reply.elapsedTime / 1000);
    if (reply.statusCode >= 500)
      request.log.error({ req: request, status: reply.statusCode }, "request failed");
    else request.log.debug({ req: request, status: reply.statusCode, ms: reply.elapsedTime }, "request");
  });
  app.addHook("onSend", async (_request, reply) => {
    reply.header("cache-control", "no-store");
    reply.header("x-content-type-options", "nosniff");
  });

  const guard = createScopeGuards(config, deps.store);
  const onEnqueued = deps.onEnqueued ?? (() => {});
  const events = deps.events ?? noEvents;
  const sealer = sealerFor(config);
  let inbound = deps.inbound;
  if (!inbound) {
    // Built here only when the caller wires none (createGateway does): then this app starts and stops it.
    const own = createInboundPipeline({
      store: deps.store,
      events,
      autoReplier: autoReplierFor(config, deps.store, {
        onEnqueued,
        log: app.log.child({ component: "replies" }),
        budgetMs: deps.replyMatchBudgetMs,
      }),
      log: app.log,
    });
    app.addHook("onReady", async () => own.start());
    app.addHook("onClose", async () => own.stop());
    inbound = own;
  }
  let templates = deps.templates;
  if (!templates) {
    const own = createTemplateCatalog({
      sources: templateSources(config, deps.store.numbers, sealer),
      ttlMs: config.TEMPLATES_CACHE_SECONDS * 1000,
      log: app.log.child({ component: "templates" }),
    });
    // Read in the background from the start, so the first template sends are already checked.
    app.addHook("onReady", async () => {
      const cloudNumbers = (await deps.store.numbers.listNumbers()).filter((n) => n.transport === "cloud");
      own.warm([undefined, ...cloudNumbers.map((n) => n.id)]);
    });
    app.addHook("onClose", async () => own.close());
    templates = own;
  }
  // What POST /v1/otp sends from a cloud number, checked like any template send.
  const otpMessage = authenticationTemplate(config, "+10000000000");
  if (otpMessage.type !== "template") throw new Error("the OTP message of a cloud number is a template");
  await app.register(opsRoutes, { store: deps.store, metrics });
  await app.register(messagesRoutes, { store: deps.store, metrics, guard, onEnqueued, templates });
  await app.register(templatesRoutes, { catalog: templates, numbers: deps.store.numbers, guard });
  await app.register(inboxRoutes, {
    store: deps.store,
    guard,
    readReceipts:
      deps.readReceipts ??
      (async () => ({ kind: "retryable", code: "no_transport", message: "no transport is wired" })),
    readTimeoutMs: config.OUTBOX_SEND_TIMEOUT_MS,
  });
  await app.register(otpRoutes, {
    otp: createOtpService(config, deps.store, deps.now),
    metrics,
    guard,
    onEnqueued,
    events,
    numbers: deps.store.numbers,
    templates,
    otpTemplate: otpMessage.template,
  });
  const graphMedia = createGraphMediaClient({
    baseUrl: config.GRAPH_API_BASE_URL,
    ...(deps.dnsServers ? { dnsServers: deps.dnsServers } : {}),
  });
  app.addHook("onClose", async () => graphMedia.close());
  await app.register(mediaRoutes, {
    config,
    store: deps.store,
    sealer,
    graph: graphMedia,
    guard,
    ...(deps.webMediaOrigin ? { webMediaOrigin: deps.webMediaOrigin } : {}),
  });
  await app.register(adminRoutes, { store: deps.store, guard });
  await app.register(numbersRoutes, {
    config,
    numbers: deps.store.numbers,
    sealer,
    guard,
    events,
    ...(deps.web ? { web: deps.web } : {}),
  });
  await app.register(broadcastRoutes, {
    store: deps.store.broadcasts,
    numbers: deps.store.numbers,
    guard,
    templates,
    onCreated: deps.onBroadcastCreated ?? (() => {}),
  });
  await app.register(metaWebhookRoutes, {
    store: deps.store,
    metrics,
    appSecret: config.WHATSAPP_APP_SECRET,
    verifyToken: config.WHATSAPP_VERIFY_TOKEN,
    events,
    inbound,
    route: metaNumberRoute(config, deps.store),
  });
  await app.register(repliesRoutes, { store: deps.store, guard, maxRulesPerSubject: config.REPLY_MAX_RULES });
  await app.register(webhooksRoutes, {
    store: deps.store,
    sealer,
    guard,
    policy: webhookUrlPolicy(config),
    resolve: deps.resolveHost ?? webhookHostResolver(config),
    maxPerSubject: config.WEBHOOK_MAX_PER_SUBJECT,
    onQueued: deps.onWebhookQueued ?? (() => {}),
  });
  await app.register(openApiRoutes, { routes });
  await app.register(apiReferenceRoutes);
  return app;
}
