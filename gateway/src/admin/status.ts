import BetterSqlite3 from "better-sqlite3";
import { type AdminCommand, parseCommandArgs } from "./command.js";
import { gatewayDatabase } from "./database-file.js";

// `wagate status [--json] [--database <file>]`: is the gateway answering, and what its database holds — the
// outbox by status, broadcasts in progress, webhook deliveries, revoked tokens. Read-only: it opens the database
// read-only and asks the gateway's own /readyz on HOST:PORT (inside the container, the gateway's port).

const usage = "status [--json] [--database <file>]";

type Counts = Record<string, number>;

export interface GatewayStatus {
  database: { path: string; sizeBytes: number; inUse: boolean };
  gateway: { url: string; ready: boolean; answer: string };
  transport: string;
  messages: Counts;
  broadcasts: Counts;
  webhookSubscriptions: number;
  webhookDeliveries: Counts;
  inboundMessages: number;
  revokedTokens: number;
}

async function readiness(url: string): Promise<{ ready: boolean; answer: string }> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(3000) });
    return { ready: response.ok, answer: `${response.status}` };
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code;
    return { ready: false, answer: `no answer (${cause ?? (error as Error).name})` };
  }
}

function countBy(db: BetterSqlite3.Database, table: string, column: string): Counts {
  const rows = db.prepare(`SELECT ${column} AS k, count(*) AS n FROM ${table} GROUP BY ${column}`).all() as {
    k: string;
    n: number;
  }[];
  return Object.fromEntries(rows.map((r) => [r.k, r.n]));
}

function count(db: BetterSqlite3.Database, table: string): number {
  return (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
}

const line = (counts: Counts) =>
  Object.keys(counts).length === 0
    ? "none"
    : Object.entries(counts)
        .map(([k, n]) => `${k} ${n}`)
        .join(", ");

export const statusCommand: AdminCommand = {
  name: "status",
  summary: "is the gateway ready; the outbox, broadcasts, webhook deliveries and revocations in its database",
  usage,
  async run(args, io) {
    const { values } = parseCommandArgs(args, {
      options: { json: { type: "boolean", default: false }, database: { type: "string" } },
    });
    const database = gatewayDatabase(values.database, io.env);
    const host = io.env.HOST === undefined || io.env.HOST === "0.0.0.0" ? "127.0.0.1" : io.env.HOST;
    const url = `http://${host.includes(":") ? `[${host}]` : host}:${io.env.PORT ?? "8080"}/readyz`;
    // Not `readonly`: such a connection leaves a -shm file behind; query_only forbids writes all the same.
    const db = new BetterSqlite3(database.path, { fileMustExist: true });
    let status: GatewayStatus;
    try {
      db.pragma("query_only = true");
      db.pragma("busy_timeout = 5000");
      status = {
        database,
        gateway: { url, ...(await readiness(url)) },
        transport: io.env.WHATSAPP_TRANSPORT ?? "sandbox",
        messages: countBy(db, "messages", "status"),
        broadcasts: countBy(db, "broadcasts", "status"),
        webhookSubscriptions: count(db, "webhook_subscriptions"),
        webhookDeliveries: countBy(db, "webhook_deliveries", "status"),
        inboundMessages: count(db, "inbound_messages"),
        revokedTokens: count(db, "revoked_tokens"),
      };
    } finally {
      db.close();
    }
    if (values.json) {
      io.out(`${JSON.stringify(status, null, 2)}\n`);
    } else {
      const mb = (status.database.sizeBytes / 1e6).toFixed(1);
      io.out(
        `${[
          `gateway     ${status.gateway.ready ? "ready" : "NOT READY"} (${status.gateway.url}: ${status.gateway.answer})`,
          `database    ${status.database.path} (${mb} MB${status.database.inUse ? ", open" : ", no process has it open"})`,
          `transport   ${status.transport}`,
          `messages    ${line(status.messages)}`,
          `broadcasts  ${line(status.broadcasts)}`,
          `webhooks    ${status.webhookSubscriptions} subscription(s); deliveries ${line(status.webhookDeliveries)}`,
          `inbound     ${status.inboundMessages} message(s)`,
          `revoked     ${status.revokedTokens} token id(s)`,
        ].join("\n")}\n`,
      );
    }
    return status.gateway.ready ? 0 : 3;
  },
};
