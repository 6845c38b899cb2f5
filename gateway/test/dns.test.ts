import { createSocket, type Socket } from "node:dgram";
import { lookup } from "node:dns/promises";
import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBoundedResolver, LookupFailed } from "../src/dns/bounded-resolver.js";
import { createCloudTransport } from "../src/transport/cloud.js";
import { eventually, startTestGateway, type TestGateway } from "./support/gateway.js";

// The gateway's own host lookups against a real name server on 127.0.0.1 (UDP): it answers names that begin
// with `public`, `private` or `mixed` with fixed A and AAAA records, and never answers names that begin with
// `hang`. No resolver is injected: the gateway's c-ares resolver talks to it.

interface NameServer {
  address: string;
  /** Query names received so far. */
  queries: string[];
  close(): Promise<void>;
}

const RECORDS: Record<string, { a: string[]; aaaa: string[] }> = {
  public: { a: ["93.184.216.34"], aaaa: ["2606:4700::1111"] },
  private: { a: ["10.1.2.3"], aaaa: [] },
  mixed: { a: ["93.184.216.34"], aaaa: ["fe80::1"] },
};

function questionName(packet: Buffer): { name: string; end: number } {
  const labels: string[] = [];
  let at = 12;
  for (let length = packet[at] ?? 0; length > 0; length = packet[at] ?? 0) {
    labels.push(packet.subarray(at + 1, at + 1 + length).toString("ascii"));
    at += 1 + length;
  }
  return { name: labels.join("."), end: at + 5 }; // the zero label, then QTYPE and QCLASS
}

function ipv6Bytes(address: string): Buffer {
  const [head = "", tail] = address.split("::");
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const groups = [...left, ...Array(8 - left.length - right.length).fill("0"), ...right];
  const out = Buffer.alloc(16);
  for (const [i, g] of groups.entries()) out.writeUInt16BE(Number.parseInt(g, 16), i * 2);
  return out;
}

/** One answer to a query: the question echoed, then the records of its type (A = 1, AAAA = 28). */
function answer(query: Buffer, name: string, end: number): Buffer | undefined {
  const type = query.readUInt16BE(end - 4);
  const records = RECORDS[name.split(".")[0]?.replace(/-.*$/, "") ?? ""];
  if (!records) return undefined;
  const rdata =
    type === 1 ? records.a.map((a) => Buffer.from(a.split(".").map(Number))) : records.aaaa.map(ipv6Bytes);
  const header = Buffer.alloc(12);
  query.copy(header, 0, 0, 2); // id
  header.writeUInt16BE(0x8180, 2); // response, recursion desired and available, no error
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(rdata.length, 6);
  const answers = rdata.map((data) => {
    const rr = Buffer.alloc(12);
    rr.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
    rr.writeUInt16BE(type, 2);
    rr.writeUInt16BE(1, 4); // IN
    rr.writeUInt32BE(60, 6);
    rr.writeUInt16BE(data.length, 10);
    return Buffer.concat([rr, data]);
  });
  return Buffer.concat([header, query.subarray(12, end), ...answers]);
}

async function startNameServer(): Promise<NameServer> {
  const socket: Socket = createSocket("udp4");
  const queries: string[] = [];
  socket.on("message", (packet, peer) => {
    const { name, end } = questionName(packet);
    queries.push(name);
    if (name.startsWith("hang")) return; // never answered
    const reply = answer(packet, name, end);
    if (reply) socket.send(reply, peer.port, peer.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  return {
    address: `127.0.0.1:${socket.address().port}`,
    queries,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

let server: NameServer;
let gw: TestGateway;
const DEADLINE_MS = 3000; // half of WEBHOOK_TIMEOUT_MS

beforeAll(async () => {
  server = await startNameServer();
  gw = await startTestGateway(
    { WEBHOOK_TIMEOUT_MS: String(2 * DEADLINE_MS) },
    { dnsServers: [server.address] },
  );
});
afterAll(async () => {
  await gw?.stop();
  await server?.close();
});

const create = (token: string, url: string) =>
  gw.request("POST", "/v1/webhooks", { token, body: { url, events: ["message.received"] } });

describe("the bounded resolver", () => {
  it("resolves A and AAAA records from the configured name server", async () => {
    const resolver = createBoundedResolver({ deadlineMs: 2000, servers: [server.address] });
    const addresses = await resolver.resolve("public.example.test", "s");
    expect(addresses).toEqual(
      expect.arrayContaining([
        { address: "93.184.216.34", family: 4 },
        { address: "2606:4700::1111", family: 6 },
      ]),
    );
    expect(server.queries).toContain("public.example.test");
  });

  it("gives up at its deadline when the name server never answers", async () => {
    const resolver = createBoundedResolver({ deadlineMs: 300, servers: [server.address] });
    const started = performance.now();
    const failure = await resolver.resolve("hang-unit.example.test", "s").catch((e: unknown) => e);
    // At the deadline, not at c-ares' own timeouts nor later (loose upper bound: a shared machine).
    const elapsed = performance.now() - started;
    expect(elapsed).toBeLessThan(1_000);
    expect(failure).toBeInstanceOf(LookupFailed);
    expect((failure as LookupFailed).reason).toBe("timeout");
    expect(server.queries).toContain("hang-unit.example.test");
  });

  it("answers localhost without a query, and IP literals as they are", async () => {
    const resolver = createBoundedResolver({ deadlineMs: 300, servers: [server.address] });
    const before = server.queries.length;
    expect(await resolver.resolve("localhost", "s")).toEqual([
      { address: "127.0.0.1", family: 4 },
      { address: "::1", family: 6 },
    ]);
    expect(await resolver.resolve("api.localhost.", "s")).toHaveLength(2);
    expect(await resolver.resolve("2001:db8::1", "s")).toEqual([{ address: "2001:db8::1", family: 6 }]);
    expect(server.queries.length).toBe(before);
  });
});

describe("webhook URLs through the gateway's resolver", () => {
  it("checks every resolved address, IPv4 and IPv6", async () => {
    const token = await gw.token(["webhooks"]);
    expect((await create(token, "https://public.example.test/hook")).status).toBe(201);
    for (const host of ["private.example.test", "mixed.example.test", "localhost"]) {
      const refused = await create(token, `https://${host}/hook`);
      expect(refused.status, host).toBe(422);
      expect(refused.json.error.message).toBe(
        "url: resolves to a loopback, private, link-local, multicast or reserved address",
      );
    }
  });

  it("with a name server that never answers: other lookups go on, each subject's lookups are capped, and the route answers a clear error at the deadline", async () => {
    const token = await gw.token(["webhooks"], { sub: "hanging-app" });
    const other = await gw.token(["webhooks"], { sub: "another-app" });
    const before = server.queries.filter((q) => q.startsWith("hang-")).length;
    const finished: string[] = [];
    const started = performance.now();
    const pending = Array.from({ length: 8 }, (_, i) =>
      create(token, `https://hang-${i}.example.test/hook`).then((response) => {
        finished.push(response.json.error.message);
        return response;
      }),
    );
    // Four of this subject's lookups are in flight at the name server; the other four were refused at once.
    await eventually(async () =>
      server.queries.filter((q) => q.startsWith("hang-")).length - before >= 4 ? true : undefined,
    );
    const busy = "url: too many host lookups in flight; try again shortly";
    await eventually(async () => (finished.filter((m) => m === busy).length === 4 ? true : undefined));
    // Meanwhile the process's other lookups and file operations (libuv's thread pool) and another subject's
    // lookup go on: all of this completes while the four lookups are still waiting for an answer.
    const otherSubject = create(other, "https://public.example.test/hook");
    expect((await lookup("localhost")).address).toMatch(/^(127\.0\.0\.1|::1)$/);
    expect((await readFile(new URL(import.meta.url), "utf8")).length).toBeGreaterThan(0);
    expect((await gw.request("GET", "/healthz")).status).toBe(200);
    expect((await otherSubject).status).toBe(201);
    expect(finished.filter((m) => m !== busy)).toEqual([]);

    const responses = await Promise.all(pending);
    // The route answers at the lookup's deadline (loose upper bound: a shared machine).
    expect(performance.now() - started).toBeLessThan(DEADLINE_MS + 2_000);
    expect(responses.map((r) => r.status)).toEqual(Array(8).fill(422));
    const timedOut = `url: host lookup did not answer within ${DEADLINE_MS} ms`;
    expect(finished.filter((m) => m === timedOut)).toHaveLength(4);
    expect(responses.every((r) => r.json.error.code === "url_refused")).toBe(true);
  });
});

describe("the Graph API host", () => {
  it("a lookup that never answers fails the send as not sent (retried), not in doubt", async () => {
    const transport = createCloudTransport({
      baseUrl: "http://hang-graph.example.test:9/v21.0",
      phoneNumberId: "1065",
      accessToken: "t",
      dnsServers: [server.address],
    });
    try {
      const started = performance.now();
      const outcome = await transport.send(
        { type: "text", to: "+14155550123", text: { body: "x" } },
        { messageId: "m-1", signal: new AbortController().signal },
      );
      expect(outcome).toEqual({ kind: "retryable", code: "network", message: "EAI_AGAIN" });
      // At the lookup's deadline, half the 10 s connect timeout (loose upper bound: a shared machine).
      expect(performance.now() - started).toBeLessThan(5_000 + 2_000);
      expect(server.queries).toContain("hang-graph.example.test");
    } finally {
      await transport.close?.();
    }
  });
});
