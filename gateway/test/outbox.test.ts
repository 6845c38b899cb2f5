import { afterEach, describe, expect, it } from "vitest";
import { backoffDelay } from "../src/queue/backoff.js";
import {
  type FakeGraph,
  graphError,
  type StatusWebhookOptions,
  startFakeGraph,
} from "./support/fake-graph.js";
import { eventually, startTestGateway, type TestGateway } from "./support/gateway.js";

// The outbox against the fake Graph API: retries with backoff on 429 / 130429 / 5xx, permanent errors recorded,
// and the in-doubt window (answer lost after the request went out) settled by Meta's status webhook.

const APP_SECRET = "app-secret-for-tests";
let fake: FakeGraph | undefined;
let gw: TestGateway | undefined;

afterEach(async () => {
  await gw?.stop();
  await fake?.close();
  gw = undefined;
  fake = undefined;
});

async function start(
  env: Record<string, string> = {},
  webhook?: Omit<StatusWebhookOptions, "url" | "appSecret">,
) {
  // The webhook target is only known once the gateway listens; the fake reads it lazily.
  const hook = webhook ? { url: "", appSecret: APP_SECRET, ...webhook } : undefined;
  fake = await startFakeGraph(hook ? { statusWebhook: hook } : {});
  gw = await startTestGateway({
    WHATSAPP_TRANSPORT: "cloud",
    GRAPH_API_BASE_URL: fake.baseUrl,
    WHATSAPP_ACCESS_TOKEN: "t",
    WHATSAPP_PHONE_NUMBER_ID: "106540352242922",
    WHATSAPP_APP_SECRET: APP_SECRET,
    ...env,
  });
  if (hook) hook.url = `${gw.url}/webhooks/whatsapp`;
  const token = await gw.token(["messages:send", "messages:read"]);
  const send = async (body = "hello") => {
    const r = await gw?.request("POST", "/v1/messages", {
      token,
      body: { type: "text", to: "+14155550123", text: { body } },
    });
    expect(r?.status).toBe(202);
    return r?.json.id as string;
  };
  const status = async (id: string) => (await gw?.request("GET", `/v1/messages/${id}`, { token }))?.json;
  const settled = (id: string, timeoutMs = 10_000) =>
    eventually(
      async () => {
        const s = await status(id);
        return s.status !== "queued" ? s : undefined;
      },
      timeoutMs,
      "message to settle",
    );
  return { send, status, settled, fake, gw };
}

describe("outbox retries", () => {
  it.each([
    ["HTTP 429", { status: 429, body: { error: { message: "Too many", code: 4 } } }],
    ["error 130429 (throughput)", graphError(130429, 400)],
    ["HTTP 500 without a code", { status: 500, body: "oops" }],
    ["HTTP 503", { status: 503 }],
    ["error 131000 (generic)", graphError(131000, 500)],
  ])("retries after %s and sends once it succeeds", async (_name, answer) => {
    const t = await start();
    t.fake.script(answer, answer);
    const id = await t.send();
    const final = await t.settled(id);
    expect(final.status).toBe("sent");
    expect(final.attempts).toBe(3);
    expect(final.error).toBeNull();
    expect(t.fake.requests).toHaveLength(3);
    expect(t.fake.accepted()).toHaveLength(1);
  });

  it.each([
    ["131026 (undeliverable)", graphError(131026), "131026"],
    ["131047 (outside the 24 h window)", graphError(131047), "131047"],
    ["190 (token expired)", graphError(190, 401), "190"],
    ["HTTP 400 without a code", { status: 400, body: {} }, "http_400"],
  ])("records a permanent error %s without retrying", async (_name, answer, code) => {
    const t = await start();
    t.fake.script(answer);
    const id = await t.send();
    const final = await t.settled(id);
    expect(final.status).toBe("failed");
    expect(final.error.code).toBe(code);
    await new Promise((r) => setTimeout(r, 150));
    expect(t.fake.requests).toHaveLength(1);
  });

  it("gives up after OUTBOX_MAX_ATTEMPTS and keeps the last error", async () => {
    const t = await start({ OUTBOX_MAX_ATTEMPTS: "3" });
    t.fake.script(graphError(130429), graphError(130429), graphError(130429), graphError(130429));
    const id = await t.send();
    const final = await t.settled(id);
    expect(final.status).toBe("failed");
    expect(final.error.code).toBe("130429");
    expect(final.attempts).toBe(3);
    expect(t.fake.requests).toHaveLength(3);
  });

  it("retries when nothing listens at the provider's address", async () => {
    const t = await start();
    // The gateway points at a port where nothing listens any more: every attempt is refused before sending.
    await t.fake.close();
    const id = await t.send();
    const s = await eventually(async () => {
      const current = await t.status(id);
      return current.attempts >= 2 ? current : undefined;
    });
    expect(s.status).toBe("queued");
    expect(s.error.code).toBe("network");
  });
});

describe("outbox crash window", () => {
  /**
   * A send whose answer is lost (the connection hangs up after Meta took it), then a wait past the lease (send
   * timeout + in-doubt grace, 2.3 s here): resolves with how many requests reached the provider by then.
   */
  async function requestsPastTheGrace(statusWebhook: boolean): Promise<{ requests: number; status: string }> {
    const t = await start(
      { OUTBOX_SEND_TIMEOUT_MS: "300", OUTBOX_IN_DOUBT_GRACE_SECONDS: "2" },
      statusWebhook ? { statuses: ["sent"] } : undefined,
    );
    t.fake.script({ hangUp: true });
    const id = await t.send();
    await t.fake.waitForRequests(1);
    await new Promise((r) => setTimeout(r, 4_000));
    const final = await t.settled(id);
    return { requests: t.fake.requests.length, status: final.status };
  }

  it("does not resend a message whose answer was lost when Meta's status webhook proves it was sent", async () => {
    expect(await requestsPastTheGrace(true)).toEqual({ requests: 1, status: "sent" });
  });

  it("(the check above fails without the proof: the same send is then resent once the grace has passed)", async () => {
    expect((await requestsPastTheGrace(false)).requests).toBe(2);
  });

  it("resends after the grace period when no proof arrives: late rather than lost", async () => {
    const t = await start({ OUTBOX_SEND_TIMEOUT_MS: "200", OUTBOX_IN_DOUBT_GRACE_SECONDS: "1" });
    t.fake.script({ status: 200, delayMs: 1500 });
    const id = await t.send();
    await t.fake.waitForRequests(1);
    expect((await t.status(id)).status).toBe("queued");
    const final = await t.settled(id, 15_000);
    expect(final.status).toBe("sent");
    expect(t.fake.requests).toHaveLength(2);
  });
});

describe("backoff", () => {
  it("grows exponentially, stays within its cap and is jittered", () => {
    expect(backoffDelay(1, 1000, 60_000, () => 0)).toBe(500);
    expect(backoffDelay(1, 1000, 60_000, () => 1)).toBe(1000);
    expect(backoffDelay(4, 1000, 60_000, () => 1)).toBe(8000);
    expect(backoffDelay(30, 1000, 60_000, () => 1)).toBe(60_000);
    expect(backoffDelay(30, 1000, 60_000, () => 0)).toBe(30_000);
  });
});
