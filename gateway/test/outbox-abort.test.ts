import type { FastifyBaseLogger } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { createSealer } from "../src/crypto/sealer.js";
import { uuidv7 } from "../src/ids.js";
import { createMetrics } from "../src/metrics.js";
import { OutboxWorker } from "../src/queue/outbox.js";
import { openSqliteStore } from "../src/store/sqlite.js";
import type { Store } from "../src/store/store.js";
import type { SendContext, SendOutcome, Transport } from "../src/transport/transport.js";

// abort() is the shutdown deadline (main.ts): every send in flight is aborted, and so is one that starts later.
// Their rows stay `sending` (in doubt) until their lease ends.

const silent = {
  level: "silent",
  fatal: () => {},
  error: () => {},
  warn: () => {},
  info: () => {},
  debug: () => {},
  trace: () => {},
  silent: () => {},
  child: () => silent,
} as unknown as FastifyBaseLogger;

/** A transport whose sends end only when their signal aborts. */
function hangingTransport() {
  const signals: AbortSignal[] = [];
  const transport: Transport = {
    name: "hanging",
    send: (_message, context: SendContext) => {
      signals.push(context.signal);
      return new Promise<SendOutcome>((resolve) => {
        const settle = () => resolve({ kind: "in_doubt", code: "aborted", message: "aborted" });
        if (context.signal.aborted) settle();
        else context.signal.addEventListener("abort", settle, { once: true });
      });
    },
  };
  return { transport, signals };
}

let store: Store | undefined;
let outbox: OutboxWorker | undefined;

afterEach(async () => {
  await outbox?.stop();
  await store?.close();
  outbox = undefined;
  store = undefined;
});

async function startWith(transport: Transport, messages: number): Promise<OutboxWorker> {
  store = openSqliteStore(":memory:");
  for (let i = 0; i < messages; i++) {
    const now = Date.now();
    await store.enqueueMessage({
      id: uuidv7(now),
      subject: "test",
      kind: "text",
      message: { type: "text", to: "+14155550123", text: { body: `message ${i}` } },
      priority: 1,
      createdAt: now,
    });
  }
  outbox = new OutboxWorker({
    store,
    transport,
    log: silent,
    metrics: createMetrics(),
    concurrency: 4,
    maxAttempts: 3,
    backoffBaseMs: 1000,
    backoffMaxMs: 1000,
    // Short, so that a send abort() missed ends the test soon (as a failure).
    sendTimeoutMs: 3000,
    inDoubtGraceMs: 60_000,
    pollIntervalMs: 20,
    sealer: createSealer("ab".repeat(32)),
  });
  return outbox;
}

const until = async (condition: () => boolean) => {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(condition()).toBe(true);
};

describe("OutboxWorker.abort", () => {
  it("aborts every send in flight", async () => {
    const { transport, signals } = hangingTransport();
    const worker = await startWith(transport, 3);
    worker.start();
    await until(() => signals.length === 3);
    expect(signals.some((s) => s.aborted)).toBe(false);
    worker.abort();
    expect(signals.every((s) => s.aborted)).toBe(true);
    expect(signals[0]?.reason).toMatchObject({ name: "AbortError" });
    await worker.stop();
  });

  it("aborts a send that starts after it at once", async () => {
    const { transport, signals } = hangingTransport();
    const worker = await startWith(transport, 1);
    worker.abort();
    worker.start();
    await until(() => signals.length === 1);
    expect(signals[0]?.aborted).toBe(true);
    await worker.stop();
  });
});
