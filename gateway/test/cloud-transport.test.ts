import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { freePort } from "../../scripts/lib/processes.js";
import type { OutgoingMessage } from "../src/messages.js";
import { createCloudTransport } from "../src/transport/cloud.js";
import type { Transport } from "../src/transport/transport.js";

// The cloud transport against a real HTTP server on loopback: what it sends, how it reads Meta's answers, and
// how each way a request can fail is classified (sent, not sent, or in doubt).

const TOKEN = "test-access-token";
const message: OutgoingMessage = { type: "text", to: "+14155550123", text: { body: "hello" } };

interface Received {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: string;
}

interface TestServer {
  baseUrl: string;
  received: Received[];
  connections: number;
  close(): Promise<void>;
}

const open: Array<{ transport: Transport; server?: TestServer }> = [];

async function serve(answer: (req: IncomingMessage, res: ServerResponse) => void): Promise<TestServer> {
  const received: Received[] = [];
  const state = { connections: 0 };
  const server: Server = createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => {
      body += chunk;
    });
    req.on("end", () => {
      received.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body });
      answer(req, res);
    });
  });
  server.on("connection", () => {
    state.connections++;
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/v21.0`,
    received,
    get connections() {
      return state.connections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function transportFor(baseUrl: string, server?: TestServer): Transport {
  const transport = createCloudTransport({ baseUrl, phoneNumberId: "106540352242922", accessToken: TOKEN });
  open.push({ transport, ...(server ? { server } : {}) });
  return transport;
}

function send(transport: Transport, signal = new AbortController().signal) {
  return transport.send(message, { messageId: "0190-test-id", signal });
}

afterEach(async () => {
  for (const { transport, server } of open.splice(0)) {
    await transport.close?.();
    await server?.close();
  }
});

describe("cloud transport", () => {
  it("posts the Graph API body with the bearer token and returns the wamid", async () => {
    const server = await serve((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ messaging_product: "whatsapp", messages: [{ id: "wamid.ABC" }] }));
    });
    const outcome = await send(transportFor(server.baseUrl, server));
    expect(outcome).toEqual({ kind: "accepted", providerMessageId: "wamid.ABC" });
    const [req] = server.received;
    expect(req?.method).toBe("POST");
    expect(req?.url).toBe("/v21.0/106540352242922/messages");
    expect(req?.headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(req?.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(req?.body ?? "{}")).toMatchObject({
      messaging_product: "whatsapp",
      to: "14155550123",
      type: "text",
      biz_opaque_callback_data: "0190-test-id",
      text: { body: "hello" },
    });
  });

  it("reuses one kept-alive connection for sends one after another", async () => {
    const server = await serve((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ messages: [{ id: "wamid.X" }] }));
    });
    const transport = transportFor(server.baseUrl, server);
    for (let i = 0; i < 20; i++) expect((await send(transport)).kind).toBe("accepted");
    expect(server.received).toHaveLength(20);
    expect(server.connections).toBe(1);
  });

  it("classifies Meta's error envelope by its code", async () => {
    const server = await serve((_req, res) => {
      res.writeHead(400, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { code: 131026, message: "undeliverable" } }));
    });
    expect(await send(transportFor(server.baseUrl, server))).toMatchObject({
      kind: "permanent",
      code: "131026",
    });
  });

  it("does not follow a redirect", async () => {
    const server = await serve((_req, res) => {
      res.writeHead(307, { location: "http://127.0.0.1:1/elsewhere" });
      res.end();
    });
    const outcome = await send(transportFor(server.baseUrl, server));
    expect(outcome).toMatchObject({ kind: "permanent", code: "http_307" });
    expect(server.received).toHaveLength(1);
  });

  it("goes by the status line when the connection closes in the middle of the answer", async () => {
    const server = await serve((req, res) => {
      const status = req.url?.includes("/2/") ? 503 : 200;
      res.writeHead(status, { "content-type": "application/json", "content-length": "1000" });
      res.write('{"messages":[');
      setTimeout(() => res.socket?.destroy(), 20);
    });
    // A 2xx: Meta took the message, its wamid is unknown (the status webhook carries our id).
    expect(await send(transportFor(`${server.baseUrl}/1`, server))).toEqual({
      kind: "accepted",
      providerMessageId: null,
    });
    expect(await send(transportFor(`${server.baseUrl}/2`))).toMatchObject({
      kind: "retryable",
      code: "http_503",
    });
  });

  it("is in doubt when the send is aborted before the answer (the outbox's timeout)", async () => {
    const server = await serve(() => {
      // Never answers.
    });
    const timeout = AbortSignal.timeout(150);
    expect(await send(transportFor(server.baseUrl, server), timeout)).toEqual({
      kind: "in_doubt",
      code: "network",
      message: "TimeoutError",
    });
    expect(server.received).toHaveLength(1);
  });

  it("retries when nothing listens: nothing was sent", async () => {
    const port = await freePort();
    expect(await send(transportFor(`http://127.0.0.1:${port}/v21.0`))).toEqual({
      kind: "retryable",
      code: "network",
      message: "ECONNREFUSED",
    });
  });
});
