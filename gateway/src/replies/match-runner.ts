import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import type { MatchRequest, MatchResponse } from "./match-worker.js";

// Runs regex rules off the event loop, under a time budget per message. Chosen over matching on the main
// thread in slices: one rule is the smallest slice re2js allows (a `find` cannot be paused), and one rule at the
// per-rule cap takes 0.3–1 s on a 4,096-character message, so slices could not keep /healthz under 50 ms. In a
// worker thread the event loop only posts a message and waits; a rule that overruns the budget is stopped by
// terminating the worker (a new one starts for the next message).

export type RegexOutcome =
  | { kind: "matched"; ruleId: string }
  | { kind: "no_match" }
  | { kind: "budget_exhausted" };

export interface MatchRunner {
  /** Tries `rules` (best first) on `text`; the first that matches wins. */
  firstMatch(rules: MatchRequest["rules"], text: string): Promise<RegexOutcome>;
  close(): Promise<void>;
}

/**
 * The worker stops by itself between rules once the budget is spent; it is terminated only when one rule runs
 * past the budget by this much (a new worker then costs a start: tens of ms compiled, about 1 s from source).
 */
const KILL_GRACE_MS = 100;
/** The worker's own heap: compiled programs of a few thousand rules and one message. */
const WORKER_HEAP_MB = 64;

/**
 * Compiled, this module is match-runner.js next to match-worker.js. Run from source (tsx, vitest) it is .ts:
 * the worker then registers tsx's loader before importing the TypeScript worker (Node 20 does not apply a
 * parent's `--import tsx` to a worker's entry module).
 */
function newWorker(): Worker {
  const options = { resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB } };
  if (!import.meta.url.endsWith(".ts"))
    return new Worker(new URL("./match-worker.js", import.meta.url), options);
  const require = createRequire(import.meta.url);
  const manifest = require.resolve("tsx/package.json");
  const tsxApi = (JSON.parse(readFileSync(manifest, "utf8")) as TsxManifest).exports["./esm/api"].import
    .default;
  const api = pathToFileURL(join(dirname(manifest), tsxApi)).href;
  const entry = new URL("./match-worker.ts", import.meta.url).href;
  const bootstrap = `import(${JSON.stringify(api)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(bootstrap, { ...options, eval: true });
}

interface TsxManifest {
  exports: { "./esm/api": { import: { default: string } } };
}

export function createMatchRunner(options: { budgetMs: number }): MatchRunner {
  let worker: Worker | undefined;
  let ready: Promise<void> | undefined;
  let nextId = 0;
  let closed = false;

  function start(): { worker: Worker; ready: Promise<void> } {
    if (worker && ready) return { worker, ready };
    const w = newWorker();
    // An idle worker never keeps the process alive (it is held while a match runs).
    w.unref();
    w.on("error", () => {});
    w.on("exit", () => {
      if (worker === w) {
        worker = undefined;
        ready = undefined;
      }
    });
    worker = w;
    ready = new Promise<void>((resolve, reject) => {
      const onReady = (message: { ready?: boolean }) => {
        if (message.ready !== true) return;
        w.off("message", onReady);
        resolve();
      };
      w.on("message", onReady);
      w.once("exit", (code) => reject(new Error(`reply match worker exited with code ${code}`)));
    });
    ready.catch(() => {});
    return { worker: w, ready };
  }

  return {
    async firstMatch(rules, text) {
      if (rules.length === 0) return { kind: "no_match" };
      if (closed) throw new Error("match runner closed");
      const current = start();
      current.worker.ref();
      try {
        // Starting a worker is not the message's cost: the budget starts once it runs.
        await current.ready;
        return await run(current.worker, rules, text);
      } finally {
        current.worker.unref();
      }
    },
    async close() {
      closed = true;
      const w = worker;
      worker = undefined;
      ready = undefined;
      if (w) await w.terminate();
    },
  };

  function run(w: Worker, rules: MatchRequest["rules"], text: string): Promise<RegexOutcome> {
    const id = ++nextId;
    return new Promise<RegexOutcome>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        w.off("message", onMessage);
        w.off("exit", onExit);
      };
      const onMessage = (response: MatchResponse) => {
        if (response.id !== id) return;
        done();
        resolve(
          response.exhausted
            ? { kind: "budget_exhausted" }
            : response.ruleId === null
              ? { kind: "no_match" }
              : { kind: "matched", ruleId: response.ruleId },
        );
      };
      const onExit = () => {
        done();
        reject(new Error("reply match worker stopped"));
      };
      const timer = setTimeout(() => {
        done();
        // A single rule overran the budget: nothing else can stop re2js mid-match.
        if (worker === w) {
          worker = undefined;
          ready = undefined;
        }
        void w.terminate();
        resolve({ kind: "budget_exhausted" });
      }, options.budgetMs + KILL_GRACE_MS);
      w.on("message", onMessage);
      w.on("exit", onExit);
      const request: MatchRequest = { id, rules, text, budgetMs: options.budgetMs };
      w.postMessage(request);
    });
  }
}
