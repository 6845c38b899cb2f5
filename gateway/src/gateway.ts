import type { FastifyInstance } from "fastify";
import { buildApp } from "./app.js";
import { BroadcastSender } from "./broadcasts/sender.js";
import type { Config } from "./config.js";
import { sealerFor } from "./crypto/sealer.js";
import type { EventSink } from "./events.js";
import { createMetrics } from "./metrics.js";
import { OutboxWorker, type RateLimiter } from "./queue/outbox.js";
import { openSqliteStore } from "./store/sqlite.js";
import type { Store } from "./store/store.js";
import { createTransport, type Transport } from "./transport/index.js";
import { secretAssociatedData, WebhookDispatcher } from "./webhooks/dispatcher.js";
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
  /** Name servers for the gateway's own lookups instead of the system's (`ip:port`; tests). */
  dnsServers?: readonly string[];
  /** Regex time per inbound message for automated replies (tests shorten it). */
  replyMatchBudgetMs?: number;
}

/** Wires config, store, transport, HTTP app and outbox worker: what `main.ts` runs and the tests start. */
export async function createGateway(config: Config, overrides: GatewayOverrides = {}): Promise<Gateway> {
  const store =
    overrides.store ?? openSqliteStore(config.DATABASE_PATH, { fsync: config.DATABASE_SYNC === "full" });
  const transport = overrides.transport ?? createTransport(config, overrides.dnsServers);
  const sealer = sealerFor(config);
  const metrics = createMetrics();
  let outbox: OutboxWorker | undefined;
  let webhooks: WebhookDispatcher | undefined;
  const resolveHost = overrides.resolveHost ?? webhookHostResolver(config, overrides.dnsServers);
  const events = overrides.events ?? createWebhookEventSink({ store, onQueued: () => webhooks?.notify() });
  let broadcasts: BroadcastSender | undefined;
  const app = await buildApp(config, {
    store,
    metrics,
    onEnqueued: () => outbox?.notify(),
    events,
    onWebhookQueued: () => webhooks?.notify(),
    resolveHost,
    onBroadcastCreated: () => broadcasts?.notify(),
    ...(overrides.logger === undefined ? {} : { logger: overrides.logger }),
    ...(overrides.now ? { now: overrides.now } : {}),
    ...(overrides.replyMatchBudgetMs === undefined
      ? {}
      : { replyMatchBudgetMs: overrides.replyMatchBudgetMs }),
  });
  broadcasts = new BroadcastSender({
    store: store.broadcasts,
    events,
    log: app.log.child({ component: "broadcasts" }),
    ratePerSecond: config.BROADCAST_RATE_PER_SECOND,
    pairIntervalMs: config.BROADCAST_PAIR_INTERVAL_SECONDS * 1000,
    onMaterialised: () => outbox?.notify(),
  });
  const broadcastSender = broadcasts;
  outbox = new OutboxWorker({
    store,
    transport,
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
          sealer.reseal(sealed, owner.kind === "message" ? owner.id : secretAssociatedData(owner.id)),
        );
        app.log.info(counts, "API_SECRET rotation: sealed secrets moved under the current secret");
      }
      const address = await app.listen({ host: config.HOST, port: config.PORT });
      worker.start();
      dispatcher.start();
      broadcastSender.start();
      return address;
    },
    stop() {
      stopped ??= (async () => {
        await app.close();
        await broadcastSender.stop();
        await worker.stop();
        await dispatcher.stop();
        await transport.close?.();
        await store.close();
      })();
      return stopped;
    },
  };
}
