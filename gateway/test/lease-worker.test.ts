import type { FastifyBaseLogger } from "fastify";
import { describe, expect, it } from "vitest";
import { LeaseWorker } from "../src/queue/lease-worker.js";

// The claim-and-handle loop on an in-memory queue: the outbox and the webhook dispatcher run on it.

/** Keeps what was logged at error level; the rest is dropped. */
function recordingLog(lines: Array<Record<string, unknown> & { msg: string }> = []): FastifyBaseLogger {
  const ignore = () => {};
  const log = {
    level: "error",
    error: (fields: Record<string, unknown>, msg: string) => void lines.push({ ...fields, msg }),
    fatal: ignore,
    warn: ignore,
    info: ignore,
    debug: ignore,
    trace: ignore,
    silent: ignore,
    child: () => log,
  };
  return log as unknown as FastifyBaseLogger;
}

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

const until = async (condition: () => boolean) => {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(condition()).toBe(true);
};

describe("LeaseWorker", () => {
  it("never has more than `concurrency` items in flight, claims as slots free, and drains on stop", async () => {
    const queue = Array.from({ length: 10 }, (_, i) => i);
    const gates = new Map<number, ReturnType<typeof deferred>>();
    const limits: number[] = [];
    let inFlight = 0;
    let peak = 0;
    const done: number[] = [];
    const worker = new LeaseWorker<number>({
      name: "test",
      concurrency: 3,
      pollIntervalMs: 60_000,
      log: recordingLog(),
      claim: async (limit) => {
        limits.push(limit);
        return queue.splice(0, limit);
      },
      handle: async (item) => {
        inFlight++;
        peak = Math.max(peak, inFlight);
        const gate = deferred();
        gates.set(item, gate);
        await gate.promise;
        inFlight--;
        done.push(item);
      },
      describe: (item) => ({ item }),
    });
    worker.start();
    await until(() => gates.size === 3);
    gates.get(1)?.resolve();
    // A freed slot wakes the loop at once (the poll interval is a minute).
    await until(() => gates.size === 4);
    expect(limits.slice(0, 2)).toEqual([3, 1]);
    const stopped = worker.stop();
    for (const gate of gates.values()) gate.resolve();
    await stopped;
    expect(peak).toBe(3);
    expect(done.sort()).toEqual([0, 1, 2, 3]);
    expect(queue).toHaveLength(6); // nothing claimed after stop()
  });

  it("logs a failed claim and a failed item, and keeps going", async () => {
    const lines: Array<Record<string, unknown> & { msg: string }> = [];
    const log = recordingLog(lines);
    let claims = 0;
    const handled: number[] = [];
    const worker = new LeaseWorker<number>({
      name: "test",
      concurrency: 2,
      pollIntervalMs: 5,
      log,
      claim: async () => {
        claims++;
        if (claims === 1) throw new Error("database busy");
        return claims === 2 ? [7, 8] : [];
      },
      handle: async (item) => {
        if (item === 7) throw new Error("refused");
        handled.push(item);
      },
      describe: (item) => ({ item }),
    });
    worker.start();
    await until(() => handled.includes(8) && lines.length === 2);
    await worker.stop();
    expect(lines.map((l) => l.msg)).toEqual(["test: claiming failed", "test: handling failed"]);
    expect(lines[1]?.item).toBe(7);
  });
});
