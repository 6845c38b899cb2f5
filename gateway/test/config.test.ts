import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.js";

// The configuration is validated at start; a bad value stops the process with one line naming the variable.

const SECRET = "ab".repeat(32);

function errorOf(env: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

describe("configuration", () => {
  it("has safe defaults for everything but the secret", () => {
    const config = loadConfig({ API_SECRET: SECRET });
    expect(config).toMatchObject({
      HOST: "127.0.0.1",
      PORT: 8080,
      // Durable by default: a 202 follows the WAL's sync; normal is an opt-in.
      DATABASE_SYNC: "full",
      JWT_ISSUER: "wagate",
      JWT_AUDIENCE: "wagate",
      WHATSAPP_TRANSPORT: "sandbox",
      OTP_TTL_SECONDS: 300,
      OTP_MAX_ATTEMPTS: 5,
    });
    expect(config.GRAPH_API_BASE_URL).toMatch(/^https:\/\/graph\.facebook\.com\/v[0-9]+\.0$/);
  });

  it.each([
    ["API_SECRET", {}, "is required"],
    ["API_SECRET", { API_SECRET: "" }, "must be hexadecimal"],
    ["API_SECRET", { API_SECRET: "ab".repeat(31) }, "at least 32 bytes"],
    ["API_SECRET", { API_SECRET: `${"zz".repeat(32)}` }, "hexadecimal"],
    [
      "API_SECRET_PREVIOUS",
      { API_SECRET: SECRET, API_SECRET_PREVIOUS: "ab".repeat(31) },
      "at least 32 bytes",
    ],
    ["API_SECRET_PREVIOUS", { API_SECRET: SECRET, API_SECRET_PREVIOUS: SECRET.toUpperCase() }, "must differ"],
    ["PORT", { API_SECRET: SECRET, PORT: "http" }, "number"],
    ["PORT", { API_SECRET: SECRET, PORT: "70000" }, "at most"],
    ["WHATSAPP_TRANSPORT", { API_SECRET: SECRET, WHATSAPP_TRANSPORT: "twilio" }, "cloud or sandbox"],
    [
      "WHATSAPP_ACCESS_TOKEN",
      { API_SECRET: SECRET, WHATSAPP_TRANSPORT: "cloud", WHATSAPP_PHONE_NUMBER_ID: "1" },
      "required",
    ],
    [
      "WHATSAPP_PHONE_NUMBER_ID",
      { API_SECRET: SECRET, WHATSAPP_TRANSPORT: "cloud", WHATSAPP_ACCESS_TOKEN: "t" },
      "required",
    ],
    ["GRAPH_API_BASE_URL", { API_SECRET: SECRET, GRAPH_API_BASE_URL: "ftp://x" }, "URL"],
    ["OTP_TTL_SECONDS", { API_SECRET: SECRET, OTP_TTL_SECONDS: "3600" }, "at most 600"],
    ["OTP_LENGTH", { API_SECRET: SECRET, OTP_LENGTH: "4" }, "at least 6"],
  ])("names %s when it is wrong", (variable, env, detail) => {
    const error = errorOf(env);
    expect(error.variable).toBe(variable);
    expect(error.message).toContain(variable);
    expect(error.message).toContain(detail);
    expect(error.message).not.toContain("\n");
  });

  it("never echoes the rejected value", () => {
    const almost = "cd".repeat(31);
    expect(errorOf({ API_SECRET: almost }).message).not.toContain(almost);
  });

  it("stops the process with exit code 1 and one line on stderr, no stack trace", () => {
    const result = spawnSync(process.execPath, ["--import", "tsx", "gateway/src/main.ts"], {
      cwd: join(import.meta.dirname, "../.."),
      env: { PATH: process.env.PATH ?? "", API_SECRET: "too-short" },
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(result.status).toBe(1);
    const lines = result.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^wagate: invalid configuration: API_SECRET /);
    expect(result.stderr).not.toContain("too-short");
  });
});
