import type { FastifyBaseLogger, FastifyInstance } from "fastify";
import { autoReplierFor, buildApp } from "./app.js";
import { BroadcastSender } from "./broadcasts/sender.js";
import { AdaptiveThrottle } from "./broadcasts/throttle.js";
import { JitteredPace } from "./broadcasts/web-pace.js";
import type { Config } from "./config.js";
import { sealerFor } from "./crypto/sealer.js";
import type { EventSink } from "./events.js";
import { createInboundPipeline } from "./inbound/pipeline.js";
import { fetchMediaLink } from "./media/link-fetch.js";
import { createMetrics } from "./metrics.js";
import { sealedOwnerAssociatedData } from "./numbers/sealing.js";
import { OutboxWorker, type RateLimiter } from "./queue/outbox.js";
import { openSqliteStore } from "./store/sqlite.js";
import type { Store } from "./store/store.js";
import { createTransport, type Transport } from "./transport/index.js";
import { createTransportRouter } from "./transport/router.js";
import { WebNumbers } from "./transport/web/manager.js";
import type { SocketFactory } from "./transport/web/socket.js";
import { WebhookDispatcher } from "./webhooks/dispatcher.js";
import { createWebhookEventSink } from "./webhooks/sink.js";
import { type HostResolver, webhookHostResolver, webhookUrlPolicy } from "./webhooks/ssrf.js";

export interface Gateway {
  app: FastifyInstance;
  store: Store;
  outbox: OutboxWorker;
  broadcasts: BroadcastSender;
  /** Listens and starts the outbox worker; resolves with the bound address. */
  start(): Promise<string>;
  /** Stops accepting requests, lets in-flight sends finish, closes the database. */
  stop(): Promise<void>;
}

export interface GatewayOverrides {
  store?: Store;
  transport?: Transport;
  limiter?: RateLimiter;
  logger?: false | NodeJS.WritableStream;
  now?: () => number;
  /** Where events are published (default: the persistent sink that feeds outbound webhooks). */
  events?: EventSink;
  /** Resolves webhook hosts for the SSRF checks (tests control what a name resolves to). */
  resolveHost?: HostResolver;
  /** Opens WhatsApp Web sockets (default: Baileys; tests give a fake that emits Baileys' events). */
  webSocketFactory?: SocketFactory;
  /** Name servers for the gateway's own lookups instead of the system's (`ip:port`; tests). */
  dnsServers?: readonly string[];
  /** Regex time per inbound message for automated replies (tests shorten it). */
  replyMatchBudgetMs?: number;
  /** Where web numbers' media are fetched instead of WhatsApp's media servers (`http://127.0.0.1:port`; tests). */
  webMediaOrigin?: string;
  /** Certificate authorities trusted for media links web numbers fetch (a test's self-signed server). */
  mediaLinkCa?: string;
}

/** Wires config, store, transport, HTTP app and outbox worker: what `main.ts` runs and the tests start. */
export async function createGateway(config: Config, overrides: GatewayOverrides = {}): Promise<Gateway> {
  const store =
    overrides.store ?? openSqliteStore(config.DATABASE_PATH, { fsync: config.DATABASE_SYNC === "full" });
  const sealer = sealerFor(config);
  const metrics = createMetrics();
  let outbox: OutboxWorker | undefined;
  let webhooks: WebhookDispatcher | undefined;
  const resolveHost = overrides.resolveHost ?? webhookHostResolver(config, overrides.dnsServers);
  const events = overrides.events ?? createWebhookEventSink({ store, onQueued: () => webhooks?.notify() });
  let broadcasts: BroadcastSender | undefined;
  let wake: () => void = () => {};
  // The pipeline is built before the app (its routes and the web numbers share it), so the automated replier logs
  // through the app's logger once there is one; it settles nothing before start() anyway.
  let replyLog: FastifyBaseLogger | undefined;
  const inbound = createInboundPipeline({
    store,
    events,
    autoReplier: autoReplierFor(config, store, {
      onEnqueued: () => wake(),
      log: new Proxy({} as FastifyBaseLogger, {
        get: (_target, key) => (replyLog ? Reflect.get(replyLog, key) : () => {}),
      }),
      budgetMs: overrides.replyMatchBudgetMs,
    }),
  });
  let web: WebNumbers | undefined;
  let transport: Transport | undefined;
  const app = await buildApp(config, {
    // The routes reach the transport once it exists (the web numbers it routes to need the app's logger).
    readReceipts: async (receipt) =>
      transport?.markRead
        ? transport.markRead(receipt)
        : { kind: "retryable", code: "starting", message: "the gateway is starting" },
    inbound,
    // The routes reach the web numbers once they exist (they need the app's logger).
    web: {
      link: (number, request) =>
        web ? web.link(number, request) : Promise.resolve({ kind: "unavailable", reason: "starting" }),
      forget: async (numberId) => web?.forget(numberId),
    },
    store,
    metrics,
    onEnqueued: () => outbox?.notify(),
    events,
    onWebhookQueued: () => webhooks?.notify(),
    resolveHost,
    ...(overrides.dnsServers ? { dnsServers: overrides.dnsServers } : {}),
    ...(overrides.webMediaOrigin ? { webMediaOrigin: overrides.webMediaOrigin } : {}),
    onBroadcastCreated: () => broadcasts?.notify(),
    ...(overrides.logger === undefined ? {} : { logger: overrides.logger }),
    ...(overrides.now ? { now: overrides.now } : {}),
  });
  replyLog = app.log.child({ component: "replies" });
  web = new WebNumbers({
    store,
    sealer,
    log: app.log.child({ component: "web" }),
    events,
    inbound,
    ...(overrides.webSocketFactory ? { socketFactory: overrides.webSocketFactory } : {}),
    linkTimeoutMs: config.WEB_LINK_TIMEOUT_SECONDS * 1000,
    unlinkedWaitMs: config.WEB_UNLINKED_WAIT_SECONDS * 1000,
    reconnectBaseMs: config.WEB_RECONNECT_BASE_MS,
    reconnectMaxMs: config.WEB_RECONNECT_MAX_MS,
    // A web number's media by link, fetched here through the webhooks' SSRF guard (its resolver and exemptions).
    fetchLink: (link, maxBytes, numberId) =>
      fetchMediaLink(link, maxBytes, `media-link:${numberId}`, {
        policy: webhookUrlPolicy(config),
        resolve: resolveHost,
        timeoutMs: Math.max(config.WEBHOOK_TIMEOUT_MS, 10_000),
        ca: overrides.mediaLinkCa,
      }),
  });
  const webNumbers = web;
  const router = createTransportRouter({
    defaultTransport: overrides.transport ?? createTransport(config, overrides.dnsServers),
    numbers: store.numbers,
    sealer,
    mode: config.WHATSAPP_TRANSPORT,
    graphBaseUrl: config.GRAPH_API_BASE_URL,
    web: webNumbers,
  });
  transport = router;
  broadcasts = new BroadcastSender({
    store: store.broadcasts,
    events,
    log: app.log.child({ component: "broadcasts" }),
    ratePerSecond: config.BROADCAST_RATE_PER_SECOND,
    pairIntervalMs: config.BROADCAST_PAIR_INTERVAL_SECONDS * 1000,
    onMaterialised: () => outbox?.notify(),
    // Web numbers: a jittered pace of seconds per message and a daily cap (ban-aware defaults, see README).
    paceFor: (numberId, now) =>
      numberId && store.numbers.cachedNumber(numberId)?.transport === "web"
        ? new JitteredPace(
            config.WEB_BROADCAST_MIN_SECONDS * 1000,
            Math.max(config.WEB_BROADCAST_MIN_SECONDS, config.WEB_BROADCAST_MAX_SECONDS) * 1000,
            config.WEB_BROADCAST_DAILY_CAP,
            now,
          )
        : new AdaptiveThrottle(config.BROADCAST_RATE_PER_SECOND, now),
  });
  const broadcastSender = broadcasts;
  outbox = new OutboxWorker({
    store,
    transport: router,
    log: app.log.child({ component: "outbox" }),
    metrics,
    concurrency: config.OUTBOX_CONCURRENCY,
    maxAttempts: config.OUTBOX_MAX_ATTEMPTS,
    backoffBaseMs: config.OUTBOX_BACKOFF_BASE_MS,
    backoffMaxMs: config.OUTBOX_BACKOFF_MAX_MS,
    sendTimeoutMs: config.OUTBOX_SEND_TIMEOUT_MS,
    inDoubtGraceMs: config.OUTBOX_IN_DOUBT_GRACE_SECONDS * 1000,
    pollIntervalMs: config.OUTBOX_POLL_INTERVAL_MS,
    sealer,
    // A message may name a medium by the id POST /v1/media answered: Meta needs its own media id.
    uploadedMedia: {
      providerMediaId: async (id) => {
        const media = await store.media.getMedia(id);
        return media?.direction === "out" ? media.providerMediaId : undefined;
      },
    },
    // Throughput refusals of any message slow broadcasts down.
    limiter: broadcastSender.limiter(overrides.limiter),
  });
  webhooks = new WebhookDispatcher({
    store,
    sealer,
    log: app.log.child({ component: "webhooks" }),
    policy: webhookUrlPolicy(config),
    resolve: resolveHost,
    timeoutMs: config.WEBHOOK_TIMEOUT_MS,
    concurrency: config.WEBHOOK_CONCURRENCY,
    backoffBaseMs: config.WEBHOOK_BACKOFF_BASE_MS,
    backoffMaxMs: config.WEBHOOK_BACKOFF_MAX_MS,
    retryWindowMs: config.WEBHOOK_RETRY_WINDOW_SECONDS * 1000,
    maxAttempts: config.WEBHOOK_MAX_ATTEMPTS,
    pollIntervalMs: config.WEBHOOK_POLL_INTERVAL_MS,
  });
  const dispatcher = webhooks;
  const worker = outbox;
  wake = () => worker.notify();
  let stopped: Promise<void> | undefined;
  return {
    app,
    store,
    outbox: worker,
    broadcasts: broadcastSender,
    async start() {
      if (config.API_SECRET_PREVIOUS) {
        // A rotation: what the previous secret sealed moves under the current one before any of it is used.
        // A value sealed under an even older secret opens under neither: the store leaves it and counts it.
        const counts = await store.resealSecrets((owner, sealed) =>
          sealer.reseal(sealed, sealedOwnerAssociatedData(owner)),
        );
        app.log.info(counts, "API_SECRET rotation: sealed secrets moved under the current secret");
      }
      // Inbound messages a stop left committed but unprocessed are processed before new ones arrive.
      await inbound.recover(Date.now());
      inbound.start();
      const address = await app.listen({ host: config.HOST, port: config.PORT });
      await webNumbers.start();
      worker.start();
      dispatcher.start();
      broadcastSender.start();
      return address;
    },
    stop() {
      stopped ??= (async () => {
        await app.close();
        await inbound.stop();
        await broadcastSender.stop();
        await worker.stop();
        await dispatcher.stop();
        await router.close?.();
        await store.close();
      })();
      return stopped;
    },
  };
}
