import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type HostResolver, isForbiddenAddress, parseWebhookUrl, RefusedUrl } from "../src/webhooks/ssrf.js";
import { inboundNotification, signWebhook } from "./support/fake-graph.js";
import { eventually, startTestGateway, type TestGateway } from "./support/gateway.js";
import { startWebhookReceiver, type WebhookReceiver } from "./support/webhook-receiver.js";

// The SSRF guard: every refused address family at creation (through the API), http refused unless the operator
// allows it, and the check repeated at delivery time against a host name whose resolution the test controls
// (an injected resolver) — the connection then goes to the checked address, never to a second DNS answer.

const PUBLIC = "93.184.216.34";
/** What each test host name resolves to; tests change it between creation and delivery. */
const dns = new Map<string, string[]>();
const resolver: HostResolver = async (hostname) => {
  const addresses = dns.get(hostname);
  if (!addresses) throw new Error("ENOTFOUND");
  return addresses.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));
};

let strict: TestGateway; // defaults: https only, no allowed hosts
let lenient: TestGateway; // http allowed, `allowed.test` allowed, fast retries
let strictToken: string;
let lenientToken: string;
let receiver: WebhookReceiver;
const APP_SECRET = "meta-app-secret-for-ssrf";

beforeAll(async () => {
  strict = await startTestGateway({}, { resolveHost: resolver });
  lenient = await startTestGateway(
    {
      WHATSAPP_APP_SECRET: APP_SECRET,
      WEBHOOK_ALLOW_HTTP: "true",
      WEBHOOK_ALLOWED_HOSTS: "allowed.test",
      WEBHOOK_BACKOFF_BASE_MS: "20",
      WEBHOOK_BACKOFF_MAX_MS: "40",
      WEBHOOK_MAX_ATTEMPTS: "2",
      WEBHOOK_POLL_INTERVAL_MS: "20",
    },
    { resolveHost: resolver },
  );
  strictToken = await strict.token(["webhooks"]);
  lenientToken = await lenient.token(["webhooks"]);
  receiver = await startWebhookReceiver();
});
afterAll(async () => {
  await strict?.stop();
  await lenient?.stop();
  await receiver?.close();
});

const create = (gw: TestGateway, bearer: string, url: string) =>
  gw.request("POST", "/v1/webhooks", { token: bearer, body: { url, events: ["message.received"] } });

const REFUSED_LITERALS = [
  "https://127.0.0.1/hook",
  "https://127.1.2.3/hook",
  "https://[::1]/hook",
  "https://[::]/hook",
  "https://0.0.0.0/hook",
  "https://10.1.2.3/hook",
  "https://172.16.0.1/hook",
  "https://172.31.255.254/hook",
  "https://192.168.1.1/hook",
  "https://100.64.0.1/hook",
  "https://169.254.10.10/hook",
  "https://169.254.169.254/latest/meta-data/",
  "https://[fd00:ec2::254]/",
  "https://[fc00::1]/hook",
  "https://[fe80::1]/hook",
  "https://224.0.0.1/hook",
  "https://239.255.255.250/hook",
  "https://[ff02::1]/hook",
  "https://255.255.255.255/hook",
  // IPv4-mapped and -embedded IPv6 forms
  "https://[::ffff:127.0.0.1]/hook",
  "https://[::ffff:7f00:1]/hook",
  "https://[::ffff:169.254.169.254]/hook",
  "https://[::ffff:10.0.0.1]/hook",
  "https://[0:0:0:0:0:ffff:c0a8:0101]/hook",
  "https://[64:ff9b::a9fe:a9fe]/hook",
  "https://[2002:7f00:1::]/hook",
  // local-use NAT64 (64:ff9b:1::/48, RFC 8215) and Teredo (2001::/32), whatever IPv4 address they carry
  "https://[64:ff9b:1::a00:1]/hook",
  "https://[64:ff9b:1:ffff::808:808]/hook",
  "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook",
  "https://[2001::1]/hook",
  // numeric tricks: decimal, hex, octal, short forms
  "https://2130706433/hook",
  "https://0x7f000001/hook",
  "https://0x7f.0.0.1/hook",
  "https://0177.0.0.1/hook",
  "https://127.1/hook",
  "https://2852039166/latest/meta-data/",
  "https://0xa9.0xfe.0xa9.0xfe/",
];

describe("at creation", () => {
  it.each(REFUSED_LITERALS)("refuses %s", async (url) => {
    const response = await create(strict, strictToken, url);
    expect(response.status).toBe(422);
    expect(response.json.error.code).toBe("url_refused");
    expect(response.json.error.message).toMatch(/^url: /);
  });

  it("refuses host names that resolve to a refused address, even when only one of several does", async () => {
    dns.set("private.test", ["10.9.8.7"]);
    dns.set("metadata.test", ["169.254.169.254"]);
    dns.set("mapped.test", ["::ffff:127.0.0.1"]);
    dns.set("mixed.test", [PUBLIC, "192.168.0.10"]);
    dns.set("mixed6.test", ["2606:4700::1111", "fe80::1"]);
    for (const host of ["private.test", "metadata.test", "mapped.test", "mixed.test", "mixed6.test"]) {
      const response = await create(strict, strictToken, `https://${host}/hook`);
      expect(response.status, host).toBe(422);
      expect(response.json.error.message).toContain("resolves to");
    }
    const unknown = await create(strict, strictToken, "https://nowhere.test/hook");
    expect(unknown.status).toBe(422);
    expect(unknown.json.error.message).toContain("does not resolve");
  });

  it("refuses http unless allowed, credentials in the URL and non-URLs; accepts a public https host", async () => {
    dns.set("public.test", [PUBLIC, "2606:4700::1111"]);
    expect((await create(strict, strictToken, "http://public.test/hook")).json.error.message).toBe(
      "url: must be an https URL",
    );
    expect((await create(strict, strictToken, "https://user:pw@public.test/hook")).status).toBe(422);
    expect((await create(strict, strictToken, "ftp://public.test/hook")).status).toBe(422);
    expect((await create(strict, strictToken, "not a url")).status).toBe(422);
    expect((await create(strict, strictToken, "https://public.test/hook")).status).toBe(201);
    expect((await create(strict, strictToken, `https://${PUBLIC}/hook`)).status).toBe(201);
    expect((await create(lenient, lenientToken, "http://public.test/hook")).status).toBe(201);
  });

  it("re-checks the URL when a subscription is changed", async () => {
    dns.set("public-two.test", [PUBLIC]);
    const created = await create(strict, strictToken, "https://public-two.test/hook");
    expect(created.status).toBe(201);
    const patched = await strict.request("PATCH", `/v1/webhooks/${created.json.id}`, {
      token: strictToken,
      body: { url: "https://[::ffff:a9fe:a9fe]/" },
    });
    expect(patched.status).toBe(422);
  });
});

describe("the address classifier", () => {
  it("tells public addresses from refused ones", () => {
    for (const ok of [
      PUBLIC,
      "8.8.8.8",
      "2606:4700::1111",
      "2a00:1450:4001::200e",
      "::ffff:8.8.8.8",
      "172.32.0.1",
      "100.128.0.1",
      // next to the new ranges, and still public
      "64:ff9b::808:808", // well-known NAT64 prefix carrying a public IPv4 address
      "64:ff9b:2::1",
      "2001:4860:4860::8888", // 2001:4860::/32 is not Teredo
      "2001:1::1",
    ]) {
      expect(isForbiddenAddress(ok), ok).toBe(false);
    }
    for (const bad of [
      "127.0.0.1",
      "::1",
      "fd00:ec2::254",
      "::ffff:7f00:1",
      "::127.0.0.1",
      "fe80::1%eth0",
      "64:ff9b:1::1",
      "64:ff9b:1:abcd::8.8.8.8",
      "2001:0:4136:e378:8000:63bf:3fff:fdd2",
      "2001:0:ffff:ffff:ffff:ffff:ffff:ffff",
      "not-an-ip",
    ]) {
      expect(isForbiddenAddress(bad), bad).toBe(true);
    }
  });

  it("refuses http only when the operator did not allow it", () => {
    expect(() => parseWebhookUrl("http://example.test/", { allowHttp: false, allowedHosts: [] })).toThrow(
      RefusedUrl,
    );
    expect(parseWebhookUrl("http://example.test/", { allowHttp: true, allowedHosts: [] }).protocol).toBe(
      "http:",
    );
  });
});

async function publishInbound(text: string): Promise<void> {
  const payload = inboundNotification([
    { id: `wamid.ssrf-${Date.now()}-${text}`, from: "14155550109", text },
  ]);
  const body = JSON.stringify(payload);
  const response = await lenient.request("POST", "/webhooks/whatsapp", {
    body,
    headers: { "content-type": "application/json", "x-hub-signature-256": signWebhook(APP_SECRET, body) },
  });
  expect(response.status).toBe(200);
}

async function lastDelivery(subscriptionId: string, status: string) {
  return eventually(async () => {
    const response = await lenient.request(
      "GET",
      `/v1/webhooks/${subscriptionId}/deliveries?status=${status}`,
      {
        token: lenientToken,
      },
    );
    return response.json.data[0] as { last_error: string | null; attempts: number } | undefined;
  });
}

describe("at delivery time", () => {
  it("refuses a host whose DNS answer changed to a private address since creation, without connecting", async () => {
    dns.set("rebinding.test", [PUBLIC]);
    const created = await create(lenient, lenientToken, `http://rebinding.test:${receiver.port}/hook`);
    expect(created.status).toBe(201);
    dns.set("rebinding.test", ["127.0.0.1"]);
    const before = receiver.received.length;
    await publishInbound("rebinding");
    const failed = await lastDelivery(created.json.id, "failed");
    expect(failed.last_error).toContain("url refused");
    expect(failed.attempts).toBe(2);
    expect(receiver.received.length).toBe(before);
    await lenient.request("DELETE", `/v1/webhooks/${created.json.id}`, { token: lenientToken });
  });

  it("connects to the address it checked: an allowed host name reaches the receiver through the pinned lookup", async () => {
    // `allowed.test` exists only in the test's resolver: the request reaches 127.0.0.1 because the delivery
    // connects to the resolved, checked address rather than asking the system's DNS again.
    dns.set("allowed.test", ["127.0.0.1"]);
    const created = await create(lenient, lenientToken, `http://allowed.test:${receiver.port}/hook`);
    expect(created.status).toBe(201);
    await publishInbound("pinned");
    await lastDelivery(created.json.id, "delivered");
    const got = receiver.received.find((q) => q.rawBody.includes("pinned"));
    expect(got?.headers.host).toBe(`allowed.test:${receiver.port}`);
    await lenient.request("DELETE", `/v1/webhooks/${created.json.id}`, { token: lenientToken });
  });
});
