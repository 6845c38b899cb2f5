import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

// WAL checkpoints copy the log back into the database file and fsync it: tens of milliseconds on a busy disk.
// Left to SQLite's auto-checkpoint they run inside whichever COMMIT crosses the threshold, i.e. on the event
// loop, stalling every request. Here they run on a worker thread with its own connection (a PASSIVE
// checkpoint never blocks the writer), and the main connection's auto-checkpoint is turned off. SQLite fsyncs
// the WAL before it checkpoints, so with synchronous=NORMAL this also bounds what a power cut can take to about
// one interval.

const WORKER_SOURCE = `
const { workerData, parentPort } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.path);
db.pragma("busy_timeout = 5000");
const timer = setInterval(() => {
  try { db.pragma("wal_checkpoint(PASSIVE)"); } catch {}
}, workerData.intervalMs);
parentPort.on("message", () => {
  clearInterval(timer);
  try { db.pragma("wal_checkpoint(PASSIVE)"); } catch {}
  db.close();
  parentPort.close();
});
`;

export interface Checkpointer {
  stop(): Promise<void>;
}

export function startCheckpointer(path: string, intervalMs = 1000): Checkpointer {
  const driver = createRequire(import.meta.url).resolve("better-sqlite3");
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { path, driver, intervalMs } });
  worker.unref();
  let stopped: Promise<void> | undefined;
  return {
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        worker.once("exit", () => resolve());
        // Keep the process alive until the final checkpoint is done (it is unref'd while idle).
        worker.ref();
        worker.postMessage("stop");
      });
      return stopped;
    },
  };
}
