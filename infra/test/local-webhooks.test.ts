import { createHmac } from "node:crypto";
import { chmod, mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inboundNotification } from "../../gateway/test/support/fake-graph.js";
import { type LocalStack, startLocalStack } from "../../scripts/lib/local-stack.js";
import { freePort } from "../../scripts/lib/processes.js";

// The README's local recipe for webhooks, for real through nginx: Meta's handshake with the verify token from
// stack.json, a signed Meta delivery with its app secret, and the gateway's outbound webhook reaching a plain
// http receiver on this machine, which `--allow-webhook-host localhost --allow-webhook-http` allow. By name: CRS
// refuses a request body holding a URL with a literal IP address (rule 931100, remote file inclusion).

let dir: string;
let stack: LocalStack | undefined;
let ca: string;
let httpsPort: number;
let receiver: Server | undefined;
const received: { headers: IncomingHttpHeaders; body: string }[] = [];

function call(
  method: string,
  path: string,
  body?: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        method,
        host: "127.0.0.1",
        port: httpsPort,
        path,
        servername: "gateway.test",
        ca,
        headers: { host: "gateway.test", ...headers },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          text += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "wagate-local-hooks-"));
  await chmod(dir, 0o755);
  receiver = createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => {
      body += c;
    });
    req.on("end", () => {
      received.push({ headers: req.headers, body });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver?.listen(0, "localhost", resolve));
  httpsPort = await freePort();
  stack = await startLocalStack({
    rootDir: join(dir, "local"),
    httpPort: await freePort(),
    httpsPort,
    webhookAllowedHosts: ["localhost"],
    webhookAllowHttp: true,
  });
  ca = await readFile(stack.caCert, "utf8");
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await new Promise((resolve) => receiver?.close(resolve));
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("webhooks on the local stack", () => {
  it("stack.json holds what Meta's handshake and signatures need", async () => {
    const facts = JSON.parse(await readFile(join(dir, "local", "stack.json"), "utf8")) as Record<
      string,
      unknown
    >;
    expect(facts.verifyToken).toMatch(/^[0-9a-f]{32}$/);
    expect(facts.metaWebhookUrl).toBe(`https://gateway.test:${httpsPort}/webhooks/whatsapp`);
    expect(facts.webhookAllowedHosts).toEqual(["localhost"]);
    expect(facts.webhookAllowHttp).toBe(true);
  });

  it("answers Meta's handshake with the verify token, and refuses another token", async () => {
    if (!stack) throw new Error("stack did not start");
    const ok = await call(
      "GET",
      `/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=${stack.verifyToken}&hub.challenge=1158201444`,
    );
    expect(ok).toEqual({ status: 200, body: "1158201444" });
    const wrong = await call(
      "GET",
      "/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=not-the-token&hub.challenge=1158201444",
    );
    expect(wrong.status).toBe(403);
  });

  it("delivers an inbound message, signed by Meta's app secret, to a receiver on localhost", async () => {
    if (!stack || !receiver) throw new Error("stack did not start");
    const address = receiver.address();
    if (address === null || typeof address === "string") throw new Error("receiver not listening");
    const json = { authorization: `Bearer ${stack.adminToken}`, "content-type": "application/json" };
    const created = await call(
      "POST",
      "/v1/webhooks",
      JSON.stringify({ url: `http://localhost:${address.port}/hook`, events: ["message.received"] }),
      json,
    );
    expect(created.status, created.body).toBe(201);

    const delivery = JSON.stringify(
      inboundNotification([{ id: "wamid.local-recipe-1", from: "14155550123", text: "hello from a phone" }]),
    );
    const signature = `sha256=${createHmac("sha256", stack.appSecret).update(delivery).digest("hex")}`;
    const meta = await call("POST", "/webhooks/whatsapp", delivery, {
      "content-type": "application/json",
      "x-hub-signature-256": signature,
    });
    expect(meta.status, meta.body).toBe(200);

    const deadline = Date.now() + 20_000;
    while (received.length === 0 && Date.now() < deadline) await sleep(100);
    expect(received).toHaveLength(1);
    const event = JSON.parse(received[0]?.body ?? "{}") as { type: string; data: unknown };
    expect(event.type).toBe("message.received");
    expect(JSON.stringify(event.data)).toContain("hello from a phone");
    expect(received[0]?.headers["x-wagate-signature"]).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
  });
});
