import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

// WAL checkpoints copy the log back into the database file and fsync it: tens of milliseconds on a busy disk.
// Left to SQLite's auto-checkpoint they run inside whichever COMMIT crosses the threshold, i.e. on the event
// loop, stalling every request. Here they run on a worker thread with its own connection (a PASSIVE
// checkpoint never blocks the writer), and the main connection's auto-checkpoint is turned off. SQLite fsyncs
// the WAL before it checkpoints, so with synchronous=NORMAL this also bounds what a power cut can take to about
// one interval.
//
// A checkpoint alone does not shrink the log: SQLite starts writing the WAL from its beginning again only when a
// write transaction begins while every frame is already copied. Under sustained writes there is always a commit
// between the end of one pass and the next, so the WAL grew without bound (57 MB after 20,000 messages), and a
// growing file costs every sync a journal commit (its size changed): an fdatasync measured 4.5-5.4 ms appending
// against 3.1 ms rewriting in place here. So once the log holds `restartFrames` frames, the worker copies until
// little is left, then asks the main thread to hold its commits (`hold`; requests are still read and parsed)
// while it copies the rest; the main thread's next commit then rewrites the WAL from its start.

const WORKER_SOURCE = `
const { workerData, parentPort } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.path);
db.pragma("busy_timeout = 5000");
const checkpoint = () => {
  try {
    const [row] = db.pragma("wal_checkpoint(PASSIVE)");
    return { log: row.log, checkpointed: row.checkpointed };
  } catch {
    return { log: 0, checkpointed: 0 };
  }
};
let stopping = false;
let held;
let wake;
parentPort.on("message", (message) => {
  if (message === "held") held?.();
  else if (message === "stop") {
    stopping = true;
    wake?.();
  }
});
const sleep = (ms) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    wake = () => {
      clearTimeout(timer);
      resolve();
    };
  });
async function run() {
  let busy = false;
  while (!stopping) {
    // While the WAL fills quickly, look again sooner: it starts over at about restartFrames, not at a second's worth.
    await sleep(busy ? workerData.intervalMs / 5 : workerData.intervalMs);
    if (stopping) break;
    let pass = checkpoint();
    busy = pass.log >= workerData.restartFrames / 2;
    // Passes shrink while they are faster than the writer; a few at most, then wait for the next interval.
    for (let i = 0; i < 8 && !stopping && pass.log >= workerData.restartFrames; i++) {
      if (pass.log - pass.checkpointed > workerData.finalFrames) {
        pass = checkpoint();
        continue;
      }
      await new Promise((resolve) => {
        held = resolve;
        parentPort.postMessage("hold");
      });
      held = undefined;
      checkpoint();
      parentPort.postMessage("release");
      break;
    }
  }
  checkpoint();
  db.close();
  parentPort.close();
}
run();
`;

export interface Checkpointer {
  stop(): Promise<void>;
}

/** What the checkpointer asks of the writer while it copies the last frames of a long WAL. */
export interface CommitHold {
  /** No new commit starts until `release` (none is running: commits are synchronous). */
  hold(): void;
  release(): void;
}

export interface CheckpointerOptions {
  intervalMs?: number;
  /** A WAL of this many frames (pages) is made to start over (SQLite's own auto-checkpoint default: 1000). */
  restartFrames?: number;
  /** Commits are held only while at most this many frames are left to copy. */
  finalFrames?: number;
  /** The longest commits are held if the worker does not answer. */
  maxHoldMs?: number;
}

export function startCheckpointer(
  path: string,
  writer: CommitHold,
  options: CheckpointerOptions = {},
): Checkpointer {
  const driver = createRequire(import.meta.url).resolve("better-sqlite3");
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: {
      path,
      driver,
      intervalMs: options.intervalMs ?? 1000,
      restartFrames: options.restartFrames ?? 1000,
      finalFrames: options.finalFrames ?? 256,
    },
  });
  worker.unref();
  const maxHoldMs = options.maxHoldMs ?? 250;
  let holdTimer: NodeJS.Timeout | undefined;
  const release = () => {
    if (holdTimer === undefined) return;
    clearTimeout(holdTimer);
    holdTimer = undefined;
    writer.release();
  };
  worker.on("message", (message: unknown) => {
    if (message === "hold") {
      writer.hold();
      // A worker that never answers must not stop the gateway's writes.
      holdTimer = setTimeout(release, maxHoldMs);
      holdTimer.unref();
      worker.postMessage("held");
    } else if (message === "release") release();
  });
  worker.on("exit", release);
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
