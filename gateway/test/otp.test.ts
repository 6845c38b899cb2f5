import { readFileSync } from "node:fs";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { eventually, startTestGateway, type TestGateway } from "./support/gateway.js";

// OTP rules against a running gateway on the sandbox transport (the code is read from the sandbox outbox, as
// a person would). A movable clock drives expiry and the limits per (subject, number) and per number.

let gw: TestGateway | undefined;
afterEach(async () => {
  await gw?.stop();
  gw = undefined;
});

async function start(env: Record<string, string> = {}) {
  let offsetMs = 0;
  gw = await startTestGateway(
    { OTP_RESEND_COOLDOWN_SECONDS: "0", OTP_HOURLY_LIMIT: "50", ...env },
    { now: () => Date.now() + offsetMs },
  );
  const g = gw;
  const token = await g.token(["otp"]);
  const issue = (to: string, t = token) => g.request("POST", "/v1/otp", { token: t, body: { to } });
  const verify = (to: string, code: string, t = token) =>
    g.request("POST", "/v1/otp/verify", { token: t, body: { to, code } });
  /** The code the sandbox "sent" for this OTP's message, read from the JSONL outbox. */
  const codeOf = (messageId: string) =>
    eventually(
      async () => {
        let text = "";
        try {
          text = readFileSync(g.config.SANDBOX_OUTBOX_PATH, "utf8");
        } catch {
          return undefined;
        }
        const line = text
          .split("\n")
          .filter((l) => l.length > 0)
          .map((l) => JSON.parse(l))
          .find((l) => l.messageId === messageId);
        return line?.template.components[0].parameters[0].text as string | undefined;
      },
      10_000,
      "the OTP message in the sandbox outbox",
    );
  return { g, token, issue, verify, codeOf, advance: (ms: number) => (offsetMs += ms) };
}

const phone = "+447700900123";

describe("OTP", () => {
  it("sends a CSPRNG code with the authentication template (body and copy-code button) and verifies it once", async () => {
    const t = await start({ OTP_TEMPLATE_NAME: "login_code", OTP_TEMPLATE_LANGUAGE: "en_GB" });
    const issued = await t.issue(phone);
    expect(issued.status).toBe(202);
    expect(issued.json).toEqual({
      id: expect.any(String),
      message_id: expect.any(String),
      expires_at: expect.any(String),
    });
    const code = await t.codeOf(issued.json.message_id);
    expect(code).toMatch(/^[0-9]{6}$/);

    const lines = readFileSync(t.g.config.SANDBOX_OUTBOX_PATH, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const sent = lines.find((l) => l.messageId === issued.json.message_id);
    expect(sent).toMatchObject({
      type: "template",
      to: phone,
      template: {
        name: "login_code",
        language: "en_GB",
        components: [
          { type: "body", parameters: [{ type: "text", text: code }] },
          { type: "button", sub_type: "url", index: 0, parameters: [{ type: "text", text: code }] },
        ],
      },
    });

    const ok = await t.verify(phone, code);
    expect(ok.status).toBe(200);
    expect(ok.json).toEqual({ verified: true });
    const reused = await t.verify(phone, code);
    expect(reused.status).toBe(422);
    expect(reused.json.error.code).toBe("otp_invalid");
  });

  it("kills the code after 5 wrong attempts, even if the right one comes next", async () => {
    const t = await start();
    const issued = await t.issue(phone);
    const code = await t.codeOf(issued.json.message_id);
    const wrong = code === "000000" ? "111111" : "000000";
    for (let i = 0; i < 5; i++) expect((await t.verify(phone, wrong)).status).toBe(422);
    expect((await t.verify(phone, code)).status).toBe(422);
  });

  it("does not let parallel guesses exceed the attempt limit", async () => {
    const t = await start();
    const issued = await t.issue(phone);
    const code = await t.codeOf(issued.json.message_id);
    const wrong = code === "000000" ? "111111" : "000000";
    await Promise.all(Array.from({ length: 20 }, () => t.verify(phone, wrong)));
    expect((await t.verify(phone, code)).status).toBe(422);
  });

  it("accepts the right code after fewer than 5 wrong ones", async () => {
    const t = await start();
    const issued = await t.issue(phone);
    const code = await t.codeOf(issued.json.message_id);
    const wrong = code === "000000" ? "111111" : "000000";
    for (let i = 0; i < 4; i++) await t.verify(phone, wrong);
    expect((await t.verify(phone, code)).status).toBe(200);
  });

  it("expires codes after OTP_TTL_SECONDS", async () => {
    const t = await start({ OTP_TTL_SECONDS: "60" });
    const issued = await t.issue(phone);
    const code = await t.codeOf(issued.json.message_id);
    t.advance(61_000);
    expect((await t.verify(phone, code)).status).toBe(422);
  });

  it("keeps a code valid just before it expires", async () => {
    const t = await start({ OTP_TTL_SECONDS: "60" });
    const issued = await t.issue(phone);
    const code = await t.codeOf(issued.json.message_id);
    t.advance(55_000);
    expect((await t.verify(phone, code)).status).toBe(200);
  });

  it("replaces the previous code when a new one is issued", async () => {
    const t = await start();
    const first = await t.codeOf((await t.issue(phone)).json.message_id);
    const second = await t.codeOf((await t.issue(phone)).json.message_id);
    if (first !== second) expect((await t.verify(phone, first)).status).toBe(422);
    expect((await t.verify(phone, second)).status).toBe(200);
  });

  it("binds a code to the subject that asked for it", async () => {
    const t = await start();
    const code = await t.codeOf((await t.issue(phone)).json.message_id);
    const other = await t.g.token(["otp"], { sub: "another-app" });
    expect((await t.verify(phone, code, other)).status).toBe(422);
    expect((await t.verify(phone, code)).status).toBe(200);
  });

  it("enforces the resend cooldown per (subject, number) with the subject's own Retry-After", async () => {
    const t = await start({ OTP_RESEND_COOLDOWN_SECONDS: "30" });
    const other = await t.g.token(["otp"], { sub: "another-app" });
    expect((await t.issue(phone)).status).toBe(202);
    t.advance(10_000);
    const again = await t.issue(phone);
    expect(again.status).toBe(429);
    expect(again.json.error.code).toBe("otp_cooldown");
    // Derived from this subject's own code, 10 s ago: 20 s left.
    expect(Number(again.headers.get("retry-after"))).toBe(20);
    // Another subject is not held back by this subject's code, and learns nothing of it.
    expect((await t.issue(phone, other)).status).toBe(202);
    t.advance(5_000);
    const otherAgain = await t.issue(phone, other);
    expect(otherAgain.json.error.code).toBe("otp_cooldown");
    expect(Number(otherAgain.headers.get("retry-after"))).toBe(25);
    expect((await t.issue("+447700900999")).status).toBe(202);
    t.advance(16_000);
    expect((await t.issue(phone)).status).toBe(202);
  });

  it("caps codes per (subject, number) per hour: one subject cannot use up another's", async () => {
    const t = await start({ OTP_HOURLY_LIMIT: "3" });
    const other = await t.g.token(["otp"], { sub: "another-app" });
    for (let i = 0; i < 3; i++) {
      expect((await t.issue(phone, other)).status).toBe(202);
      t.advance(60_000);
    }
    const otherCapped = await t.issue(phone, other);
    expect(otherCapped.status).toBe(429);
    expect(otherCapped.json.error.code).toBe("otp_hourly_limit");
    // The other subject's first code was 3 min ago: its own hour ends in 57 min.
    expect(Number(otherCapped.headers.get("retry-after"))).toBe(57 * 60);
    for (let i = 0; i < 3; i++) expect((await t.issue(phone)).status).toBe(202);
    const capped = await t.issue(phone);
    expect(capped.status).toBe(429);
    expect(capped.json.error.code).toBe("otp_hourly_limit");
    expect(Number(capped.headers.get("retry-after"))).toBe(3600);
    t.advance(3_601_000);
    expect((await t.issue(phone)).status).toBe(202);
  });

  it("keeps a ceiling per number across subjects, whose refusal names no limit and no time derived from others' codes", async () => {
    const t = await start({ OTP_HOURLY_LIMIT: "3", OTP_NUMBER_HOURLY_LIMIT: "4" });
    const other = await t.g.token(["otp"], { sub: "another-app" });
    for (let i = 0; i < 3; i++) expect((await t.issue(phone, other)).status).toBe(202);
    expect((await t.issue(phone)).status).toBe(202);
    t.advance(90_000);
    const refused = await t.issue(phone);
    expect(refused.status).toBe(429);
    expect(refused.json.error).toEqual({
      code: "otp_unavailable",
      message: "no code can be sent to this number now; try again later",
    });
    // The same fixed wait whenever and by whomever the ceiling was reached.
    expect(refused.headers.get("retry-after")).toBe("3600");
    t.advance(600_000);
    const later = await t.issue(phone);
    expect(later.json.error.code).toBe("otp_unavailable");
    expect(later.headers.get("retry-after")).toBe("3600");
    // The other subject, at its own cap, hears about its own cap first.
    expect((await t.issue(phone, other)).json.error.code).toBe("otp_hourly_limit");
    // Other numbers are not affected.
    expect((await t.issue("+447700900999")).status).toBe(202);
    t.advance(3_000_000);
    expect((await t.issue(phone)).status).toBe(202);
  });

  it("never holds a code in the database, in clear or in the logs", async () => {
    const t = await start({ OTP_LENGTH: "10" });
    const codes: string[] = [];
    for (const to of ["+14155550101", "+14155550102", "+14155550103"]) {
      const issued = await t.issue(to);
      // The WAL keeps earlier versions of pages, so this also covers the time the message was queued.
      codes.push(await t.codeOf(issued.json.message_id));
    }
    const db = new Database(t.g.config.DATABASE_PATH, { readonly: true });
    const dump = (
      db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{ name: string }>
    )
      .map(({ name }) => JSON.stringify(db.prepare(`SELECT * FROM "${name}"`).all()))
      .join("\n");
    db.close();
    const files = ["", "-wal"].map((suffix) => {
      try {
        return readFileSync(`${t.g.config.DATABASE_PATH}${suffix}`).toString("latin1");
      } catch {
        return "";
      }
    });
    for (const code of codes) {
      expect(code).toMatch(/^[0-9]{10}$/);
      expect(dump).not.toContain(code);
      for (const file of files) expect(file).not.toContain(code);
      expect(t.g.logs()).not.toContain(code);
    }
    expect(await t.verify("+14155550101", codes[0] as string)).toMatchObject({ status: 200 });
    expect(t.g.logs()).not.toContain(codes[0]);
  });

  it("requires the otp scope", async () => {
    const t = await start();
    const noOtp = await t.g.token(["messages:send"]);
    expect((await t.issue(phone, noOtp)).status).toBe(403);
    expect((await t.verify(phone, "123456", noOtp)).status).toBe(403);
  });
});

describe("OTP on the cloud transport", () => {
  it("sends Meta's authentication template with the code as body and url-button parameter", async () => {
    const { startFakeGraph } = await import("./support/fake-graph.js");
    const fake = await startFakeGraph({ accessToken: "t" });
    try {
      gw = await startTestGateway({
        WHATSAPP_TRANSPORT: "cloud",
        GRAPH_API_BASE_URL: fake.baseUrl,
        WHATSAPP_ACCESS_TOKEN: "t",
        WHATSAPP_PHONE_NUMBER_ID: "106540352242922",
        OTP_TEMPLATE_NAME: "auth_code",
      });
      const token = await gw.token(["otp"]);
      const issued = await gw.request("POST", "/v1/otp", { token, body: { to: phone } });
      expect(issued.status).toBe(202);
      await fake.waitForRequests(1);
      const body = fake.requests[0]?.body as {
        template: { components: Array<{ parameters: Array<{ text: string }> }> };
      };
      const code = body.template.components[0]?.parameters[0]?.text ?? "";
      expect(code).toMatch(/^[0-9]{6}$/);
      expect(body).toEqual({
        messaging_product: "whatsapp",
        recipient_type: "individual",
        to: phone.slice(1),
        type: "template",
        biz_opaque_callback_data: issued.json.message_id,
        template: {
          name: "auth_code",
          language: { code: "en_US" },
          components: [
            { type: "body", parameters: [{ type: "text", text: code }] },
            { type: "button", sub_type: "url", index: 0, parameters: [{ type: "text", text: code }] },
          ],
        },
      });
      const verified = await gw.request("POST", "/v1/otp/verify", { token, body: { to: phone, code } });
      expect(verified.status).toBe(200);
    } finally {
      await gw?.stop();
      gw = undefined;
      await fake.close();
    }
  });
});
