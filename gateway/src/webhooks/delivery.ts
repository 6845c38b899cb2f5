import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import type { LookupFunction } from "node:net";
import type { CheckedTarget } from "./ssrf.js";

// One POST to a receiver, connecting to the address the SSRF check approved: a custom `lookup` answers with
// it, so Node never asks DNS again between check and connect. TLS still verifies the certificate against the
// URL's host name (SNI included). Redirects are answers like any other: not followed, and not a success.

export interface DeliveryOutcome {
  ok: boolean;
  statusCode: number | null;
  error: string | null;
}

const MAX_RESPONSE_BYTES = 64 * 1024;

export function postSigned(
  target: CheckedTarget,
  body: string,
  headers: Record<string, string>,
  timeoutMs: number,
): Promise<DeliveryOutcome> {
  const pinned: LookupFunction = (_hostname, options, callback) => {
    const { address, family } = target.address;
    if ((options as { all?: boolean }).all) {
      (callback as unknown as (e: null, a: Array<{ address: string; family: number }>) => void)(null, [
        { address, family },
      ]);
    } else {
      callback(null, address, family);
    }
  };
  const send = target.url.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise<DeliveryOutcome>((resolve) => {
    let settled = false;
    const finish = (outcome: DeliveryOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(outcome);
    };
    const req = send(
      target.url,
      {
        method: "POST",
        lookup: pinned,
        agent: false,
        headers: {
          ...headers,
          "content-type": "application/json",
          "content-length": String(Buffer.byteLength(body)),
          "user-agent": "wagate-webhooks/1",
        },
      },
      (res: IncomingMessage) => {
        const status = res.statusCode ?? 0;
        let received = 0;
        res.on("data", (chunk: Buffer) => {
          received += chunk.length;
          if (received > MAX_RESPONSE_BYTES) res.destroy();
        });
        const done = () => {
          if (status >= 200 && status < 300) finish({ ok: true, statusCode: status, error: null });
          else if (status >= 300 && status < 400)
            finish({ ok: false, statusCode: status, error: `redirect ${status} not followed` });
          else finish({ ok: false, statusCode: status, error: `receiver answered ${status}` });
        };
        res.on("end", done);
        res.on("close", done);
        res.on("error", done);
      },
    );
    // The whole exchange, not only socket inactivity, must fit in the timeout.
    const timer = setTimeout(() => {
      req.destroy(new Error("timeout"));
      finish({ ok: false, statusCode: null, error: `no answer within ${timeoutMs} ms` });
    }, timeoutMs);
    req.on("error", (error: NodeJS.ErrnoException) => {
      finish({ ok: false, statusCode: null, error: `connection failed (${error.code ?? "error"})` });
    });
    req.end(body);
  });
}
