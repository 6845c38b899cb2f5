import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { type MintOptions, mintToken, type Scope } from "../../src/auth/index.js";
import { type Config, loadConfig } from "../../src/config.js";
import { createGateway, type Gateway, type GatewayOverrides } from "../../src/gateway.js";

// Starts a real gateway in-process on a free loopback port, with its own temporary database.

export interface TestGateway {
  url: string;
  config: Config;
  gateway: Gateway;
  dir: string;
  /** Every JSON log line the gateway wrote so far. */
  logs(): string;
  token(scopes: Scope[], options?: Partial<MintOptions>): Promise<string>;
  request(method: string, path: string, options?: RequestOptions): Promise<TestResponse>;
  stop(): Promise<void>;
}

export interface RequestOptions {
  token?: string;
  body?: unknown;
  headers?: Record<string, string>;
}

export interface TestResponse {
  status: number;
  headers: Headers;
  // biome-ignore lint/suspicious/noExplicitAny: tests inspect JSON answers of any shape
  json: any;
  text: string;
}

export function testEnv(dir: string, env: Record<string, string> = {}): Record<string, string> {
  return {
    API_SECRET: randomBytes(32).toString("hex"),
    HOST: "127.0.0.1",
    PORT: "0",
    DATABASE_PATH: join(dir, "wagate.db"),
    WHATSAPP_TRANSPORT: "sandbox",
    SANDBOX_OUTBOX_PATH: join(dir, "sandbox-outbox.jsonl"),
    OUTBOX_POLL_INTERVAL_MS: "20",
    OUTBOX_BACKOFF_BASE_MS: "20",
    OUTBOX_BACKOFF_MAX_MS: "200",
    LOG_LEVEL: "debug",
    ...env,
  };
}

export async function startTestGateway(
  env: Record<string, string> = {},
  overrides: GatewayOverrides = {},
): Promise<TestGateway> {
  const dir = mkdtempSync(join(tmpdir(), "wagate-test-"));
  const config = loadConfig(testEnv(dir, env));
  const logStream = new PassThrough();
  let logText = "";
  logStream.on("data", (chunk: Buffer) => {
    logText += chunk.toString("utf8");
  });
  const gateway = await createGateway(config, { logger: logStream, ...overrides });
  const url = (await gateway.start()).replace("localhost", "127.0.0.1");

  async function request(method: string, path: string, options: RequestOptions = {}): Promise<TestResponse> {
    const headers: Record<string, string> = { ...options.headers };
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    let body: string | undefined;
    if (options.body !== undefined) {
      body = typeof options.body === "string" ? options.body : JSON.stringify(options.body);
      headers["content-type"] ??= "application/json";
    }
    const response = await fetch(`${url}${path}`, {
      method,
      headers,
      ...(body !== undefined ? { body } : {}),
    });
    const text = await response.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: response.status, headers: response.headers, json, text };
  }

  return {
    url,
    config,
    gateway,
    dir,
    logs: () => logText,
    token: async (scopes, options = {}) =>
      (
        await mintToken({
          secret: config.API_SECRET,
          sub: "tester",
          scopes,
          ttlSeconds: 600,
          issuer: config.JWT_ISSUER,
          audience: config.JWT_AUDIENCE,
          ...options,
        })
      ).token,
    request,
    async stop() {
      await gateway.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls `check` until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function eventually<T>(
  check: () => Promise<T | undefined>,
  timeoutMs = 10_000,
  what = "condition",
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
