import { setPriority } from "node:os";
import { parentPort } from "node:worker_threads";
import type { RE2JS } from "re2js";
import { compileRegex, MAX_REGEX_INPUT } from "./matching.js";

// The worker thread that runs regex rules (see match-runner.ts): RE2 is linear, but a 4,096-character message
// against large programs still costs seconds of CPU, which must not stall the event loop that answers HTTP.
// It stops by itself between rules once the message's budget is spent; a single rule that overruns it is
// stopped by the main thread terminating this worker.

export interface MatchRequest {
  id: number;
  /** Regex rules, best first. */
  rules: Array<{ id: string; pattern: string; ignoreCase: boolean; updatedAt: number }>;
  text: string;
  budgetMs: number;
}

export interface MatchResponse {
  id: number;
  /** The first rule whose regex matches; null when none did (or the budget ran out first). */
  ruleId: string | null;
  exhausted: boolean;
}

const MAX_CACHED = 5_000;
const compiled = new Map<string, RE2JS | null>();

function regexFor(rule: MatchRequest["rules"][number]): RE2JS | null {
  const key = `${rule.id}@${rule.updatedAt}`;
  let re = compiled.get(key);
  if (re === undefined) {
    try {
      re = compileRegex(rule.pattern, rule.ignoreCase);
    } catch {
      re = null;
    }
    if (compiled.size >= MAX_CACHED) compiled.clear();
    compiled.set(key, re);
  }
  return re;
}

parentPort?.on("message", (request: MatchRequest) => {
  const deadline = performance.now() + request.budgetMs;
  const text = request.text.length > MAX_REGEX_INPUT ? request.text.slice(0, MAX_REGEX_INPUT) : request.text;
  let response: MatchResponse = { id: request.id, ruleId: null, exhausted: false };
  for (const rule of request.rules) {
    if (performance.now() >= deadline) {
      response = { id: request.id, ruleId: null, exhausted: true };
      break;
    }
    if (regexFor(rule)?.matcher(text).find()) {
      response = { id: request.id, ruleId: rule.id, exhausted: false };
      break;
    }
  }
  parentPort?.postMessage(response);
});

// On Linux a nice value belongs to a thread (setpriority with pid 0 is the calling thread): matching yields
// the CPU to the event loop that answers HTTP, which matters on a machine with fewer cores than busy threads.
try {
  setPriority(19);
} catch {
  // Not permitted or not supported: matching then competes at the process's priority.
}

// Loaded (re2js included): the runner starts counting budgets from here.
parentPort?.postMessage({ ready: true });
