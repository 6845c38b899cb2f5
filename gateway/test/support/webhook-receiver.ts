import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";

// A customer's webhook receiver on 127.0.0.1, real HTTP: records every request with its raw body and answers
// as scripted (fail the next N requests, redirect), so tests watch deliveries, retries and signatures.

export interface ReceivedRequest {
  readonly headers: IncomingHttpHeaders;
  readonly rawBody: string;
  readonly statusSent: number;
}

export interface WebhookReceiver {
  readonly url: string;
  readonly port: number;
  readonly received: ReceivedRequest[];
  /** The next `count` requests get `status` (with a Location header for 3xx). */
  failNext(count: number, status?: number): void;
  /** The next `count` requests are read but never answered (recorded with statusSent 0). */
  hangNext(count: number): void;
  /** Every request gets `status` until changed (undefined: 200 again). */
  answerAlways(status: number | undefined): void;
  close(): Promise<void>;
}

export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const received: ReceivedRequest[] = [];
  let failures: { count: number; status: number } = { count: 0, status: 500 };
  let always: number | undefined;
  let hangs = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (hangs > 0) {
        hangs--;
        received.push({
          headers: req.headers,
          rawBody: Buffer.concat(chunks).toString("utf8"),
          statusSent: 0,
        });
        return;
      }
      let status = 200;
      if (always !== undefined) status = always;
      else if (failures.count > 0) {
        failures = { ...failures, count: failures.count - 1 };
        status = failures.status;
      }
      received.push({
        headers: req.headers,
        rawBody: Buffer.concat(chunks).toString("utf8"),
        statusSent: status,
      });
      if (status >= 300 && status < 400) res.setHeader("location", `http://127.0.0.1:${port}/elsewhere`);
      res.statusCode = status;
      res.end(status < 300 ? "ok" : "no");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    port,
    received,
    failNext(count, status = 500) {
      failures = { count, status };
    },
    hangNext(count) {
      hangs = count;
    },
    answerAlways(status) {
      always = status;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
