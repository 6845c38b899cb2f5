import { request as httpRequest } from "node:http";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestGateway, type TestGateway } from "./support/gateway.js";

// Whatever a client sends, the answer is a 4xx in the JSON error shape, nothing reaches the store unvalidated,
// and the process keeps serving.

let gw: TestGateway;
let token: string;

beforeAll(async () => {
  gw = await startTestGateway();
  token = await gw.token(["messages:send", "messages:read", "otp"]);
});
afterAll(async () => {
  await gw?.stop();
});

function expectJsonError(
  // biome-ignore lint/suspicious/noExplicitAny: tests inspect JSON answers of any shape
  response: { status: number; json: any; text: string },
  status: number,
  code?: string,
) {
  expect(response.status).toBe(status);
  expect(response.json?.error).toBeTypeOf("object");
  expect(typeof response.json.error.message).toBe("string");
  if (code) expect(response.json.error.code).toBe(code);
  expect(response.text).not.toMatch(/at .*\.(ts|js):\d+/);
  expect(response.text).not.toContain(gw.config.API_SECRET);
}

/** Raw HTTP/1.1 over a socket, for requests fetch refuses to build. */
function rawRequest(text: string): Promise<{ status: number; body: string; contentType: string }> {
  const { port } = new URL(gw.url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port: Number(port) });
    let data = "";
    socket.on("data", (chunk) => {
      data += chunk.toString("utf8");
    });
    socket.on("end", () => {
      const [head = "", ...rest] = data.split("\r\n\r\n");
      const status = Number(head.split(" ")[1]);
      const contentType = /content-type: ([^\r\n]+)/i.exec(head)?.[1] ?? "";
      resolve({ status, body: rest.join("\r\n\r\n"), contentType });
    });
    socket.on("error", reject);
    socket.write(text);
  });
}

async function countMessages(): Promise<number> {
  const { default: Database } = await import("better-sqlite3");
  const db = new Database(gw.config.DATABASE_PATH, { readonly: true });
  try {
    return (db.prepare("SELECT COUNT(*) AS n FROM messages").get() as { n: number }).n;
  } finally {
    db.close();
  }
}

const valid = { type: "text", to: "+14155550123", text: { body: "hello" } };

describe("bad input", () => {
  it("refuses malformed JSON", async () => {
    expectJsonError(
      await gw.request("POST", "/v1/messages", { token, body: '{"type":"text",' }),
      400,
      "invalid_json",
    );
  });

  it("refuses an empty body", async () => {
    expectJsonError(
      await gw.request("POST", "/v1/messages", {
        token,
        body: "",
        headers: { "content-type": "application/json" },
      }),
      400,
    );
  });

  it.each([
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/xml",
  ])("refuses content type %s with 415", async (contentType) => {
    const response = await gw.request("POST", "/v1/messages", {
      token,
      body: JSON.stringify(valid),
      headers: { "content-type": contentType },
    });
    expectJsonError(response, 415, "unsupported_media_type");
  });

  it.each([
    ["an unknown top-level field", { ...valid, priority: "high" }],
    ["an unknown nested field", { ...valid, text: { body: "x", bold: true } }],
    ["an unknown message type", { ...valid, type: "image" }],
    ["a missing recipient", { type: "text", text: { body: "x" } }],
    ["an empty text", { ...valid, text: { body: "" } }],
    ["a text over 4096 characters", { ...valid, text: { body: "x".repeat(4097) } }],
    [
      "a template with a bad name",
      { type: "template", to: "+14155550123", template: { name: "Bad Name!", language: "en_US" } },
    ],
    ["a JSON array", [valid]],
    ["a number", 42],
    [
      "a prototype pollution attempt",
      JSON.parse('{"type":"text","to":"+14155550123","text":{"body":"x"},"__proto__":{"admin":true}}'),
    ],
  ])("refuses %s with 400", async (_name, body) => {
    expectJsonError(await gw.request("POST", "/v1/messages", { token, body }), 400);
  });

  it("accepts exactly 4096 characters (counted as characters, not bytes)", async () => {
    const response = await gw.request("POST", "/v1/messages", {
      token,
      body: { ...valid, text: { body: "é".repeat(4096) } },
    });
    expect(response.status).toBe(202);
  });

  it.each([
    "14155550123",
    "+0155550123",
    "+1 415 555 0123",
    "+1415555012345678",
    "+12",
    "+1415555abcd",
    "+١٤١٥٥٥٥٠١٢٣",
    "",
    "+14155550123\n",
  ])("refuses the phone number %j", async (to) => {
    expectJsonError(
      await gw.request("POST", "/v1/messages", { token, body: { ...valid, to } }),
      400,
      "invalid_request",
    );
    expectJsonError(await gw.request("POST", "/v1/otp", { token, body: { to } }), 400, "invalid_request");
  });

  it("refuses an oversized body with 413 before parsing it", async () => {
    const response = await gw.request("POST", "/v1/messages", {
      token,
      body: { ...valid, text: { body: "x".repeat(200_000) } },
    });
    expectJsonError(response, 413, "payload_too_large");
  });

  it("refuses a flood of headers with a JSON 431", async () => {
    const headers: Record<string, string> = {};
    for (let i = 0; i < 150; i++) headers[`x-filler-${i}`] = "1";
    expectJsonError(await gw.request("POST", "/v1/messages", { token, body: valid, headers }), 431);
  });

  it("refuses headers larger than the limit with a JSON 431", async () => {
    const response = await rawRequest(
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\nConnection: close\r\n\r\n`,
    );
    expect(response.status).toBe(431);
    expect(response.contentType).toContain("application/json");
    expect(JSON.parse(response.body).error.code).toBe("headers_too_large");
  });

  it("refuses a malformed request line with a JSON 400", async () => {
    const response = await rawRequest("GARBAGE\r\n\r\n");
    expect(response.status).toBe(400);
    expect(JSON.parse(response.body).error.code).toBe("bad_request");
  });

  it("refuses a body whose length contradicts Content-Length", async () => {
    const { port } = new URL(gw.url);
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        {
          host: "127.0.0.1",
          port: Number(port),
          method: "POST",
          path: "/v1/messages",
          headers: {
            authorization: `Bearer ${token}`,
            "content-type": "application/json",
            "content-length": "5000",
          },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on("error", reject);
      req.end(JSON.stringify(valid));
      setTimeout(() => req.destroy(), 1000).unref();
    }).catch(() => 0);
    // Either a 400 or the connection closed for an incomplete body: never a 202.
    expect(status).not.toBe(202);
  });

  it("refuses a malformed message id and an unknown route in JSON", async () => {
    expectJsonError(await gw.request("GET", "/v1/messages/../../etc/passwd", { token }), 404);
    expectJsonError(await gw.request("GET", "/v1/messages/not-a-uuid", { token }), 400);
    expectJsonError(await gw.request("GET", "/nope"), 404, "not_found");
  });

  it("refuses a malformed Idempotency-Key", async () => {
    const response = await gw.request("POST", "/v1/messages", {
      token,
      body: valid,
      headers: { "idempotency-key": "x".repeat(300) },
    });
    expectJsonError(response, 400);
  });

  it("stored nothing from the refused requests and still serves", async () => {
    // Only the 4096-character message above was accepted.
    expect(await countMessages()).toBe(1);
    expect((await gw.request("GET", "/healthz")).status).toBe(200);
  });
});
