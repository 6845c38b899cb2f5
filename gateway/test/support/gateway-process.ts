import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Started, startProcess } from "../../../scripts/lib/processes.js";

// The gateway as a real child process (`tsx gateway/src/main.ts`, cloud transport against a fake Graph API), for
// the crash tests: SIGKILL one, start the next on the same database. Every process started is stopped by pid.

export interface GatewayProcesses {
  /** The temporary directory that holds the databases and the log. */
  readonly dir: string;
  readonly apiSecret: string;
  /** What the fake Graph API signs its status webhooks with. */
  readonly appSecret: string;
  /** The bearer token the fake Graph API expects. */
  readonly accessToken: string;
  start(options: {
    port: number;
    graphBaseUrl: string;
    database: string;
    env?: Record<string, string>;
  }): Started;
  /** Stops every process still running and removes the directory. */
  cleanup(): Promise<void>;
}

export function gatewayProcesses(name: string): GatewayProcesses {
  const dir = mkdtempSync(join(tmpdir(), `wagate-${name}-`));
  const apiSecret = randomBytes(32).toString("hex");
  const appSecret = randomBytes(16).toString("hex");
  const accessToken = `${name}-token`;
  const started: Started[] = [];
  return {
    dir,
    apiSecret,
    appSecret,
    accessToken,
    start({ port, graphBaseUrl, database, env = {} }) {
      const child = startProcess("gateway", process.execPath, ["--import", "tsx", "gateway/src/main.ts"], {
        cwd: join(import.meta.dirname, "../../.."),
        logFile: join(dir, "gateway.log"),
        env: {
          PATH: process.env.PATH ?? "",
          API_SECRET: apiSecret,
          HOST: "127.0.0.1",
          PORT: String(port),
          DATABASE_PATH: join(dir, database),
          WHATSAPP_TRANSPORT: "cloud",
          GRAPH_API_BASE_URL: graphBaseUrl,
          WHATSAPP_ACCESS_TOKEN: accessToken,
          WHATSAPP_PHONE_NUMBER_ID: "106540352242922",
          WHATSAPP_APP_SECRET: appSecret,
          OUTBOX_SEND_TIMEOUT_MS: "10000",
          OUTBOX_IN_DOUBT_GRACE_SECONDS: "60",
          OUTBOX_POLL_INTERVAL_MS: "50",
          ...env,
        },
      });
      started.push(child);
      return child;
    },
    async cleanup() {
      for (const p of started) await p.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
