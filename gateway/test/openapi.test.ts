import { readFileSync } from "node:fs";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { referencePagePolicy } from "../src/http/api-reference.js";
import { inboundMessagesNotification, signWebhook } from "./support/fake-graph.js";
import { startTestGateway, type TestGateway } from "./support/gateway.js";
import { routesOfTree } from "./support/route-tree.js";

// GET /v1/openapi.json against what the app really serves: every route Fastify registered is in it (read from
// Fastify's own route tree, not from the generator's list), it is a sound OpenAPI 3.1 document whose schemas compile
// as JSON Schema 2020-12, and every request the README shows for a /v1 route validates against it.

// biome-ignore lint/suspicious/noExplicitAny: the document is JSON of any shape
type Json = any;

const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;
const METHODS = ["get", "post", "put", "patch", "delete"] as const;

const toOpenApiPath = (path: string) => path.replace(/:([A-Za-z0-9_]+)/g, "{$1}");

function newAjv(): Ajv2020 {
  return addFormats(new Ajv2020({ strict: true, allErrors: true, strictRequired: false }));
}

interface ReadmeRequest {
  line: number;
  method: string;
  path: string;
  query: URLSearchParams;
  /** The JSON body as written; undefined when none, null when it is a shell variable. */
  body: unknown;
  text: string;
}

/** The curl commands of the README's shell blocks, whole (continuation lines and quotes spanning lines joined). */
function curlCommands(readme: string): Array<{ line: number; text: string }> {
  const commands: Array<{ line: number; text: string }> = [];
  for (const block of readme.matchAll(/```(?:sh|bash)\n([\s\S]*?)```/g)) {
    const code = block[1] ?? "";
    const offset = readme.slice(0, block.index).split("\n").length + 1;
    for (const found of code.matchAll(/\bcurl\b/g)) {
      let quote: string | undefined;
      let end = found.index;
      for (; end < code.length; end++) {
        const c = code[end];
        if (quote) {
          if (c === quote) quote = undefined;
        } else if (c === "'" || c === '"') quote = c;
        else if (c === "\\" && code[end + 1] === "\n") end++;
        else if (c === "\n" || c === ";" || c === "#" || c === "|") break;
      }
      const text = code.slice(found.index, end);
      commands.push({ line: offset + code.slice(0, found.index).split("\n").length - 1, text });
    }
  }
  return commands;
}

/** Splits a command into shell words (quotes removed, nothing expanded). */
function shellWords(text: string): string[] {
  const words: string[] = [];
  for (const m of text.replace(/\\\n/g, " ").matchAll(/'([^']*)'|"((?:[^"\\]|\\.)*)"|(\S+)/g))
    words.push(m[1] ?? m[2] ?? m[3] ?? "");
  return words;
}

export function readmeRequests(readme: string): ReadmeRequest[] {
  const requests: ReadmeRequest[] = [];
  for (const { line, text } of curlCommands(readme)) {
    const words = shellWords(text);
    const url = words.find((w) => /\/v1\//.test(w) && !w.startsWith("-"));
    if (!url) continue;
    const target = /(\/v1\/[^\s?]*)(?:\?(\S*))?$/.exec(url);
    if (!target?.[1]) continue;
    let method: string | undefined;
    let body: unknown;
    for (let i = 0; i < words.length; i++) {
      const word = words[i];
      if (word === "-X" || word === "--request") method = words[i + 1];
      if (word === "-d" || word === "--data" || word === "--data-raw") {
        const data = words[i + 1] ?? "";
        body = data.startsWith("$") ? null : JSON.parse(data);
      }
      // A file's raw bytes (POST /v1/media): a body, not JSON to validate.
      if (word === "--data-binary") body = null;
    }
    requests.push({
      line,
      method: method ?? (body === undefined ? "GET" : "POST"),
      path: target[1],
      query: new URLSearchParams(target[2] ?? ""),
      body,
      text,
    });
  }
  // Inline examples in the prose: `POST /v1/webhooks {"url":…}` or `POST /v1/numbers/:id/link` `{"method":"qr"}`.
  for (const m of readme.matchAll(
    /`(GET|POST|PATCH|DELETE) (\/v1\/[^\s`]*)(?: (\{[^`]*\}))?`(?: `(\{[^`]*\})`)?/g,
  )) {
    const json = m[3] ?? m[4];
    if (json === undefined) continue;
    let body: unknown;
    try {
      body = JSON.parse(json);
    } catch {
      continue; // a sketch with alternatives ("exact"|"contains"), not a request
    }
    requests.push({
      line: readme.slice(0, m.index).split("\n").length,
      method: m[1] ?? "",
      path: (m[2] ?? "").replace(/:([A-Za-z]+)/g, "<$1>"),
      query: new URLSearchParams(),
      body,
      text: m[0],
    });
  }
  return requests;
}

/** The document's path for a concrete one: literal paths first, then templates (`{id}` matching one segment). */
function pathOf(doc: Json, path: string): string | undefined {
  if (doc.paths[path]) return path;
  return Object.keys(doc.paths).find((p) =>
    new RegExp(`^${p.replace(/[.]/g, "\\.").replace(/\{[^}]+\}/g, "[^/]+")}$`).test(path),
  );
}

/** Every problem of one request against the document, as lines. */
function requestProblems(doc: Json, ajv: Ajv2020, request: ReadmeRequest): string[] {
  const where = `README line ${request.line}: ${request.method} ${request.path}`;
  const path = pathOf(doc, request.path);
  if (!path) return [`${where}: no such path in the document`];
  const operation = doc.paths[path][request.method.toLowerCase()];
  if (!operation) return [`${where}: no ${request.method} operation`];
  const problems: string[] = [];
  const validate = (schema: unknown, value: unknown, what: string) => {
    const check = ajv.compile(schema as object);
    if (!check(value)) problems.push(`${where}: ${what} ${ajv.errorsText(check.errors)}`);
  };
  const parameters = (operation.parameters ?? []) as Json[];
  for (const [name, value] of request.query) {
    const parameter = parameters.find((p) => p.in === "query" && p.name === name);
    if (!parameter) problems.push(`${where}: unknown query parameter ${name}`);
    else if (!value.startsWith("$") && !value.startsWith("<"))
      validate(
        parameter.schema,
        /^[0-9]+$/.test(value) && parameter.schema.type !== "string" ? Number(value) : value,
        `query ${name}`,
      );
  }
  const concrete = request.path.split("/");
  path.split("/").forEach((segment, i) => {
    const name = /^\{(.+)\}$/.exec(segment)?.[1];
    const value = concrete[i] ?? "";
    if (!name || value.startsWith("<") || value.startsWith("$")) return;
    const parameter = parameters.find((p) => p.in === "path" && p.name === name);
    validate(parameter?.schema ?? {}, value, `path ${name}`);
  });
  const bodySchema = operation.requestBody?.content?.["application/json"]?.schema;
  if (request.body !== undefined && request.body !== null) {
    if (!bodySchema) problems.push(`${where}: a body, but the operation takes none`);
    else validate(bodySchema, request.body, "body");
  } else if (request.body === undefined && operation.requestBody?.required && request.method !== "GET") {
    problems.push(`${where}: the operation requires a body`);
  }
  return problems;
}

/** Structure checks of OpenAPI 3.1 (what a generator or client relies on), as problem lines. */
export function openApiProblems(doc: Json): string[] {
  const problems: string[] = [];
  if (doc.openapi !== "3.1.0") problems.push(`openapi is ${doc.openapi}, not 3.1.0`);
  if (typeof doc.info?.title !== "string" || typeof doc.info?.version !== "string")
    problems.push("info needs title and version (strings)");
  const ajv = newAjv();
  const resolve = (ref: string) =>
    ref
      .replace(/^#\//, "")
      .split("/")
      .reduce((node: Json, key) => node?.[key.replace(/~1/g, "/").replace(/~0/g, "~")], doc);
  const walk = (node: Json, at: string) => {
    if (Array.isArray(node)) {
      for (const [i, n] of node.entries()) walk(n, `${at}/${i}`);
    } else if (node && typeof node === "object") {
      if (typeof node.$ref === "string" && resolve(node.$ref) === undefined)
        problems.push(`${at}: $ref ${node.$ref} resolves to nothing`);
      for (const [k, v] of Object.entries(node)) walk(v, `${at}/${k}`);
    }
  };
  walk(doc, "#");
  const schemes = Object.keys(doc.components?.securitySchemes ?? {});
  const operationIds = new Set<string>();
  const compile = (schema: unknown, at: string) => {
    try {
      ajv.compile(schema as object);
    } catch (error) {
      problems.push(`${at}: not a valid JSON Schema 2020-12 (${(error as Error).message})`);
    }
  };
  for (const [name, schema] of Object.entries(doc.components?.schemas ?? {}))
    compile(schema, `components.schemas.${name}`);
  for (const [path, item] of Object.entries(doc.paths ?? {}) as Array<[string, Json]>) {
    if (!path.startsWith("/")) problems.push(`path ${path} does not start with /`);
    const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
    for (const method of Object.keys(item)) {
      const op = item[method];
      const at = `${method.toUpperCase()} ${path}`;
      if (!(METHODS as readonly string[]).includes(method)) problems.push(`${at}: not an HTTP method`);
      if (!op.responses || Object.keys(op.responses).length === 0) problems.push(`${at}: no responses`);
      for (const status of Object.keys(op.responses ?? {}))
        if (!/^([1-5][0-9][0-9]|[1-5]XX|default)$/.test(status))
          problems.push(`${at}: response key ${status}`);
      if (operationIds.has(op.operationId)) problems.push(`${at}: operationId ${op.operationId} used twice`);
      operationIds.add(op.operationId);
      const parameters = (op.parameters ?? []) as Json[];
      for (const name of templated) {
        if (!parameters.some((p) => p.in === "path" && p.name === name && p.required === true))
          problems.push(`${at}: path parameter ${name} is not declared (required)`);
      }
      for (const p of parameters) {
        if (!["query", "header", "path", "cookie"].includes(p.in))
          problems.push(`${at}: parameter ${p.name} in ${p.in}`);
        if (p.in === "path" && !templated.includes(p.name))
          problems.push(`${at}: path parameter ${p.name} not in the path`);
        compile(p.schema, `${at} parameter ${p.name}`);
      }
      const body = op.requestBody?.content?.["application/json"]?.schema;
      if (body) compile(body, `${at} requestBody`);
      for (const [status, response] of Object.entries(op.responses ?? {}) as Array<[string, Json]>) {
        if (response.$ref) continue;
        if (typeof response.description !== "string") problems.push(`${at} ${status}: no description`);
        const schema = response.content?.["application/json"]?.schema;
        if (schema) compile(schema, `${at} response ${status}`);
      }
      for (const requirement of op.security ?? [])
        for (const name of Object.keys(requirement))
          if (!schemes.includes(name)) problems.push(`${at}: security scheme ${name} is not defined`);
    }
  }
  return problems;
}

const APP_SECRET = "app-secret-of-the-openapi-test";

/** A PNG's signature and IHDR: enough bytes for the sniffer to know an image. */
const PNG = Buffer.concat([
  Buffer.from("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489", "hex"),
  Buffer.alloc(64),
]);

describe("GET /v1/openapi.json", () => {
  let gw: TestGateway;
  let doc: Json;

  beforeAll(async () => {
    gw = await startTestGateway({ LOG_LEVEL: "warn", WHATSAPP_APP_SECRET: APP_SECRET });
    const answer = await gw.request("GET", "/v1/openapi.json");
    expect(answer.status).toBe(200);
    expect(answer.headers.get("content-type")).toMatch(/^application\/json/);
    doc = answer.json;
  });
  afterAll(async () => {
    await gw?.stop();
  });

  it("is public: served without a token", async () => {
    const answer = await gw.request("GET", "/v1/openapi.json", {
      headers: { authorization: "Bearer nope.nope.nope" },
    });
    expect(answer.status).toBe(200);
    expect(doc.paths["/v1/openapi.json"].get.security).toEqual([]);
  });

  it("describes every route the app registered (read from Fastify's route tree)", () => {
    const registered = routesOfTree(gw.gateway.app.printRoutes({ commonPrefix: false })).filter(
      (r) => r.method !== "HEAD",
    );
    expect(registered.length).toBeGreaterThan(20);
    const missing = registered
      .filter((r) => !doc.paths[toOpenApiPath(r.path)]?.[r.method.toLowerCase()])
      .map((r) => `${r.method} ${r.path}`);
    // Only the reference page's own routes (/v1/docs and /v1/docs/*: the page and its script) are left out.
    expect(missing.every((m) => m.startsWith("GET /v1/docs"))).toBe(true);
    expect(missing.filter((m) => !m.startsWith("GET /v1/docs"))).toEqual([]);
    expect(missing).toContain("GET /v1/docs");
  });

  it("is a sound OpenAPI 3.1 document whose schemas compile as JSON Schema 2020-12", () => {
    expect(openApiProblems(doc)).toEqual([]);
  });

  it("names each operation's scope as a bearer JWT requirement, and the error shape of its refusals", () => {
    expect(doc.components.securitySchemes.bearer).toMatchObject({
      type: "http",
      scheme: "bearer",
      bearerFormat: "JWT",
    });
    const send = doc.paths["/v1/messages"].post;
    expect(send.security).toEqual([{ bearer: ["messages:send"] }]);
    expect(doc.paths["/v1/messages/{id}"].get.security).toEqual([{ bearer: ["messages:read"] }]);
    expect(doc.paths["/v1/numbers"].post.security).toEqual([{ bearer: ["admin"] }]);
    expect(doc.paths["/v1/templates"].get.security).toEqual([{ bearer: ["messages:send"] }]);
    expect(doc.paths["/healthz"].get.security).toEqual([]);
    expect(doc.paths["/webhooks/whatsapp"].post.security).toEqual([]);
    for (const status of ["400", "401", "403", "413", "415", "default"])
      expect(send.responses[status]).toEqual({ $ref: expect.stringMatching(/^#\/components\/responses\//) });
    expect(doc.components.responses.Unauthorized.content["application/json"].schema).toEqual({
      $ref: "#/components/schemas/Error",
    });
    expect(doc.components.schemas.Error.properties.error.required).toEqual(["code", "message"]);
  });

  it("documents requests with the very schemas the routes validate with", async () => {
    const ajv = newAjv();
    const check = ajv.compile(doc.paths["/v1/messages"].post.requestBody.content["application/json"].schema);
    const token = await gw.token(["messages:send"]);
    const bodies = [
      { type: "text", to: "+14155550123", text: { body: "hi" } },
      { type: "text", to: "+14155550123", text: { body: "hi" }, extra: 1 },
      { type: "text", to: "4155550123", text: { body: "hi" } },
      { type: "template", to: "+14155550123", template: { name: "Bad-Name", language: "en_US" } },
      { type: "template", to: "+14155550123", template: { name: "order_update", language: "en_US" } },
    ];
    for (const body of bodies) {
      const answer = await gw.request("POST", "/v1/messages", { token, body });
      // The document and the route agree on what is valid.
      expect({ body, valid: check(body) }).toEqual({ body, valid: answer.status === 202 });
    }
    // Pipes documented by what they lead to: a number's body names its transport's fields.
    const numbers = JSON.stringify(doc.paths["/v1/numbers"].post.requestBody);
    expect(numbers).toContain("phone_number_id");
    expect(doc.paths["/v1/templates"].get.parameters.map((p: Json) => p.name)).toEqual(["number"]);
  });

  it("names the Idempotency-Key header on the routes that read it, and only there", () => {
    const withHeader: string[] = [];
    for (const [path, item] of Object.entries(doc.paths) as Array<[string, Json]>)
      for (const [method, op] of Object.entries(item) as Array<[string, Json]>)
        for (const p of op.parameters ?? [])
          if (p.in === "header" && p.name === "Idempotency-Key") {
            withHeader.push(`${method.toUpperCase()} ${path}`);
            expect(p.required).toBe(false);
            const check = newAjv().compile(p.schema);
            expect([check("order-42"), check(""), check("has space"), check("x".repeat(256))]).toEqual([
              true,
              false,
              false,
              false,
            ]);
          }
    expect(withHeader.sort()).toEqual(["POST /v1/broadcasts", "POST /v1/messages"]);
  });

  it("describes the main routes' answers, and real answers validate against them", async () => {
    const ajv = newAjv();
    const schemaOf = (path: string, method: string, status: string) => {
      const schema = doc.paths[path]?.[method]?.responses?.[status]?.content?.["application/json"]?.schema;
      expect(schema, `${method.toUpperCase()} ${path} ${status}`).toBeDefined();
      return schema;
    };
    const problems: string[] = [];
    const expectValid = (schema: unknown, answer: { status: number; json: Json }, what: string) => {
      const check = ajv.compile(schema as object);
      if (!check(answer.json)) problems.push(`${what}: ${ajv.errorsText(check.errors)}`);
    };
    const token = await gw.token(["messages:send", "messages:read", "inbox"]);

    const body = JSON.stringify(
      inboundMessagesNotification(
        [
          { from: "14155550960", id: "wamid.openapi-1", type: "text", text: { body: "hi" } },
          {
            from: "14155550960",
            id: "wamid.openapi-2",
            type: "image",
            image: { id: "1003383421387299", mime_type: "image/jpeg", sha256: "x", caption: "c" },
            context: { from: "15550783881", id: "wamid.quoted" },
          },
          { from: "14155550961", id: "wamid.openapi-3", type: "order", order: { catalog_id: "1" } },
        ],
        { profileName: "Ana" },
      ),
    );
    const delivered = await gw.request("POST", "/webhooks/whatsapp", {
      body,
      headers: { "content-type": "application/json", "x-hub-signature-256": signWebhook(APP_SECRET, body) },
    });
    expect(delivered.status).toBe(200);

    const sent = await gw.request("POST", "/v1/messages", {
      token,
      body: { type: "text", to: "+14155550960", text: { body: "hello" } },
      headers: { "idempotency-key": "openapi-answer-1" },
    });
    expect(sent.status).toBe(202);
    expectValid(schemaOf("/v1/messages", "post", "202"), sent, "POST /v1/messages 202");
    const replayed = await gw.request("POST", "/v1/messages", {
      token,
      body: { type: "text", to: "+14155550960", text: { body: "hello" } },
      headers: { "idempotency-key": "openapi-answer-1" },
    });
    expect(replayed.json).toEqual(sent.json);

    const one = await gw.request("GET", `/v1/messages/${sent.json.id}`, { token });
    expect(one.status).toBe(200);
    expectValid(schemaOf("/v1/messages/{id}", "get", "200"), one, "GET /v1/messages/{id} 200");

    const inbound = await gw.request("GET", "/v1/messages?direction=in", { token });
    expect(inbound.json.messages.length).toBeGreaterThanOrEqual(3);
    expectValid(schemaOf("/v1/messages", "get", "200"), inbound, "GET /v1/messages?direction=in 200");
    const outbound = await gw.request("GET", "/v1/messages?direction=out&limit=1", { token });
    expect(outbound.json.messages).toHaveLength(1);
    expectValid(schemaOf("/v1/messages", "get", "200"), outbound, "GET /v1/messages?direction=out 200");

    const conversations = await gw.request("GET", "/v1/conversations", { token });
    expect(conversations.json.conversations.length).toBeGreaterThanOrEqual(2);
    expectValid(schemaOf("/v1/conversations", "get", "200"), conversations, "GET /v1/conversations 200");

    const uploaded = await fetch(`${gw.url}/v1/media`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "image/png" },
      body: PNG,
    });
    expect(uploaded.status).toBe(201);
    expectValid(
      schemaOf("/v1/media", "post", "201"),
      { status: 201, json: await uploaded.json() },
      "POST /v1/media 201",
    );

    // Refusals of every kind, in the error shape.
    const refusals = [
      await gw.request("POST", "/v1/messages", { token, body: { type: "text" } }),
      await gw.request("GET", "/v1/messages/not-a-uuid", { token }),
      await gw.request("GET", "/v1/conversations"),
      await gw.request("GET", `/v1/messages/${"0".repeat(8)}-0000-7000-8000-${"0".repeat(12)}`, { token }),
      await gw.request("POST", "/v1/messages", {
        token,
        body: { type: "text", to: "+14155550960", text: { body: "other" } },
        headers: { "idempotency-key": "openapi-answer-1" },
      }),
    ];
    expect(refusals.map((r) => r.status)).toEqual([400, 400, 401, 404, 409]);
    for (const refusal of refusals)
      expectValid(doc.components.schemas.Error, refusal, `an error answer ${refusal.status}`);
    expect(problems).toEqual([]);

    // And the schemas can fail: an answer of another shape is refused.
    const check = ajv.compile(schemaOf("/v1/messages/{id}", "get", "200"));
    expect(check({ ...one.json, status: "lost" })).toBe(false);
    expect(check({ ...one.json, created_at: "yesterday" })).toBe(false);
    expect(ajv.compile(doc.components.schemas.Error)({ message: "x" })).toBe(false);
  });

  it("validates every request the README shows for a /v1 route", () => {
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    const requests = readmeRequests(readme);
    // Guard against a parser that silently finds nothing.
    expect(requests.filter((r) => r.body).length).toBeGreaterThanOrEqual(8);
    expect(requests.some((r) => r.path === "/v1/templates")).toBe(true);
    const ajv = newAjv();
    expect(requests.flatMap((r) => requestProblems(doc, ajv, r))).toEqual([]);
  });
});

describe("the README check itself", () => {
  it("catches a README example that does not fit the document", async () => {
    const gw = await startTestGateway({ LOG_LEVEL: "warn" });
    try {
      const doc = (await gw.request("GET", "/v1/openapi.json")).json;
      const wrong = [
        "```sh",
        `curl -s $G/v1/messages -H 'content-type: application/json' \\`,
        `  -d '{"type":"text","to":"+14155550123","text":{"body":"hi"},"colour":"red"}'`,
        "curl -s $G/v1/nowhere",
        `curl -s "$G/v1/templates?language=en"`,
        "```",
      ].join("\n");
      const problems = readmeRequests(wrong).flatMap((r) => requestProblems(doc, newAjv(), r));
      expect(problems).toHaveLength(3);
      expect(problems[0]).toMatch(/POST \/v1\/messages: body .*additional/);
      expect(problems[1]).toMatch(/\/v1\/nowhere: no such path/);
      expect(problems[2]).toMatch(/unknown query parameter language/);
    } finally {
      await gw.stop();
    }
  });
});

describe("GET /v1/docs/ (the reference page)", () => {
  it("loads only the gateway's own script and document, under a policy that forbids any other origin", async () => {
    const gw = await startTestGateway({ LOG_LEVEL: "warn" });
    try {
      const page = await gw.request("GET", "/v1/docs/");
      expect(page.status).toBe(200);
      expect(page.headers.get("content-type")).toMatch(/^text\/html/);
      const sources = [...page.text.matchAll(/\b(?:src|href)="([^"]+)"/g)].map((m) => m[1]);
      expect(sources).toEqual(["js/scalar.js"]);
      expect(page.text).toContain('"url": "/v1/openapi.json"');
      expect(page.text).toContain('"withDefaultFonts": false');
      const policy = page.headers.get("content-security-policy") ?? "";
      expect(policy).toBe(referencePagePolicy(page.text));
      expect(policy).toMatch(/default-src 'none'/);
      expect(policy).toMatch(/connect-src 'self'(;|$)/);
      expect(policy).toMatch(/script-src 'self' 'sha256-[A-Za-z0-9+/=]+'(;|$)/);
      const script = await gw.request("GET", "/v1/docs/js/scalar.js");
      expect(script.status).toBe(200);
      expect(script.headers.get("content-type")).toMatch(/^application\/javascript/);
      expect(script.text.length).toBeGreaterThan(100_000);
      const bare = await fetch(`${gw.url}/v1/docs`, { redirect: "manual" });
      expect(bare.status).toBe(301);
      expect(bare.headers.get("location")).toBe("/v1/docs/");
      const nothing = await gw.request("GET", "/v1/docs/nothing-here");
      expect(nothing.status).toBe(404);
      expect(nothing.json.error.code).toBe("not_found");
    } finally {
      await gw.stop();
    }
  });
});
