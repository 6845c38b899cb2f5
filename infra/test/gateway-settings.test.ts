import type * as pulumi from "@pulumi/pulumi";
import { describe, expect, it } from "vitest";
import { loadConfig as loadGatewayConfig } from "../../gateway/src/config.js";
import { ConfigError, gatewayEnvOf, parseConfig } from "../config.js";
import { parseGatewaySettings } from "../plan/gateway-settings.js";
import { renderGatewayEnvFile } from "../render/gateway-env.js";
import { readStackFile, STACKS, stackConfig } from "./support/stack-config.js";

const unwrap = <T>(output: pulumi.Output<T>) => new Promise<T>((resolve) => output.apply(resolve));

function withGateway(settings: unknown) {
  const config = stackConfig("dev");
  config.values["wagate:gateway"] = typeof settings === "string" ? settings : JSON.stringify(settings);
  return () => parseConfig(config.values, new Set(config.secretKeys), "dev");
}

function problemsOf(run: () => unknown): string[] {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error("the configuration was accepted");
}

/** Parses `KEY=value` lines the way podman's --env-file does (everything after the first `=`). */
function envFileToRecord(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .split("\n")
      .filter((line) => line.length > 0)
      .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
  );
}

// One row per refusal: the setting, and the start of the one line that must name it.
const refused: [string, Record<string, unknown>, RegExp][] = [
  ["an unknown key", { OTP_TEMPLATE: "x" }, /^wagate:gateway: OTP_TEMPLATE is not a setting of the gateway/],
  ["a lowercase key", { log_level: "info" }, /^wagate:gateway: log_level is not a setting/],
  [
    "a value out of range",
    { BROADCAST_RATE_PER_SECOND: 5000 },
    /^wagate:gateway: BROADCAST_RATE_PER_SECOND .*1000/,
  ],
  ["a value under the minimum", { OTP_TTL_SECONDS: 5 }, /^wagate:gateway: OTP_TTL_SECONDS .*30/],
  ["too many OTP attempts", { OTP_MAX_ATTEMPTS: 6 }, /^wagate:gateway: OTP_MAX_ATTEMPTS .*5/],
  ["a bad enum", { LOG_LEVEL: "loud" }, /^wagate:gateway: LOG_LEVEL /],
  [
    "a boolean that is not",
    { WEBHOOK_ALLOW_HTTP: "yes" },
    /^wagate:gateway: WEBHOOK_ALLOW_HTTP must be true or false/,
  ],
  ["a non-integer", { OUTBOX_CONCURRENCY: 1.5 }, /^wagate:gateway: OUTBOX_CONCURRENCY must be an integer/],
  ["an empty template name", { OTP_TEMPLATE_NAME: "" }, /^wagate:gateway: OTP_TEMPLATE_NAME /],
  [
    "a template cache shorter than 10 s",
    { TEMPLATES_CACHE_SECONDS: 1 },
    /^wagate:gateway: TEMPLATES_CACHE_SECONDS .*10/,
  ],
  [
    "a WABA id that is not Meta's",
    { WHATSAPP_WABA_ID: "waba-1" },
    /^wagate:gateway: WHATSAPP_WABA_ID must be the numeric/,
  ],
  [
    "a list",
    { WEBHOOK_ALLOWED_HOSTS: ["a.example"] },
    /^wagate:gateway: WEBHOOK_ALLOWED_HOSTS must be a string/,
  ],
  [
    "two lines",
    { OTP_TEMPLATE_NAME: "a\nAPI_SECRET=00" },
    /^wagate:gateway: OTP_TEMPLATE_NAME must be one line/,
  ],
  [
    "API_SECRET",
    { API_SECRET: "ab".repeat(32) },
    /^wagate:gateway: API_SECRET is a secret.*--secret wagate:apiSecret`$/,
  ],
  [
    "API_SECRET_PREVIOUS",
    { API_SECRET_PREVIOUS: "ab".repeat(32) },
    /^wagate:gateway: API_SECRET_PREVIOUS is a secret/,
  ],
  [
    "the access token",
    { WHATSAPP_ACCESS_TOKEN: "EAAxxxxxxxxxxxxxxxxxxxxx" },
    /^wagate:gateway: WHATSAPP_ACCESS_TOKEN is a secret/,
  ],
  [
    "the app secret",
    { WHATSAPP_APP_SECRET: "0123456789abcdef" },
    /^wagate:gateway: WHATSAPP_APP_SECRET is a secret/,
  ],
  [
    "the verify token",
    { WHATSAPP_VERIFY_TOKEN: "verify-me-please-123" },
    /^wagate:gateway: WHATSAPP_VERIFY_TOKEN is a secret/,
  ],
  ["anything named like a secret", { SOME_NEW_TOKEN: "x" }, /^wagate:gateway: SOME_NEW_TOKEN is a secret/],
  ["the listen address", { HOST: "0.0.0.0" }, /^wagate:gateway: HOST is set by the container's unit/],
  ["the port", { PORT: 8080 }, /^wagate:gateway: PORT is set by the container's unit/],
  ["the database path", { DATABASE_PATH: "/tmp/x.db" }, /^wagate:gateway: DATABASE_PATH is set by/],
  ["the transport", { WHATSAPP_TRANSPORT: "cloud" }, /^wagate:gateway: WHATSAPP_TRANSPORT follows from/],
  [
    "the phone number id",
    { WHATSAPP_PHONE_NUMBER_ID: "123" },
    /^wagate:gateway: WHATSAPP_PHONE_NUMBER_ID has its own key/,
  ],
];

describe("wagate:gateway is checked at preview by the gateway's own schema", () => {
  it.each(refused)("refuses %s with one line naming the key", (_what, settings, line) => {
    const problems = problemsOf(withGateway(settings));
    expect(problems).toEqual([expect.stringMatching(line)]);
  });

  it("never quotes a refused value", () => {
    const secret = "cafe".repeat(16);
    const problems = problemsOf(withGateway({ API_SECRET: secret, LOG_LEVEL: "s3cr3t-looking" }));
    expect(problems).toHaveLength(2);
    for (const p of problems) {
      expect(p).not.toContain(secret);
      expect(p).not.toContain("s3cr3t-looking");
    }
  });

  it("refuses a value that is not a map", () => {
    for (const raw of ["[1,2]", '"LOG_LEVEL=info"', "not json"]) {
      expect(problemsOf(withGateway(raw))).toEqual([expect.stringMatching(/^wagate:gateway: must be a map/)]);
    }
  });

  it("reports every bad key, not only the first", () => {
    expect(problemsOf(withGateway({ LOG_LEVEL: "x", OTP_LENGTH: 20, NOPE: 1 }))).toHaveLength(3);
  });

  it("accepts every setting the gateway reads and the deployment leaves open, with YAML's numbers and booleans", () => {
    const { settings, problems } = parseGatewaySettings(
      JSON.stringify({
        OTP_TEMPLATE_NAME: "login_code",
        OTP_TEMPLATE_LANGUAGE: "pt_BR",
        BROADCAST_RATE_PER_SECOND: 1000,
        LOG_LEVEL: "warn",
        WEBHOOK_ALLOW_HTTP: false,
        WEBHOOK_ALLOWED_HOSTS: "hooks.internal.example",
        DATABASE_SYNC: "full",
        JWT_ISSUER: "acme",
        GRAPH_API_BASE_URL: "https://graph.facebook.com/v23.0",
        WHATSAPP_WABA_ID: "102290129340398",
        TEMPLATES_CACHE_SECONDS: 600,
      }),
    );
    expect(problems).toEqual([]);
    expect(settings).toMatchObject({ BROADCAST_RATE_PER_SECOND: "1000", WEBHOOK_ALLOW_HTTP: "false" });
  });

  it.each(STACKS)("the %s stack file's example is accepted", (stack) => {
    expect(readStackFile(stack)["wagate:gateway"]).toBeDefined();
    const config = stackConfig(stack);
    const parsed = parseConfig(config.values, new Set(config.secretKeys), stack);
    expect(parsed.gatewaySettings.OTP_TEMPLATE_NAME).toBeDefined();
  });
});

describe("the settings reach the gateway's env file", () => {
  it("renders them, and the gateway loads the file with them", async () => {
    const config = withGateway({
      OTP_TEMPLATE_NAME: "login_code",
      BROADCAST_RATE_PER_SECOND: 200,
      LOG_LEVEL: "warn",
      JWT_AUDIENCE: "billing-api",
    })();
    const text = renderGatewayEnvFile(await unwrap(gatewayEnvOf(config)));
    expect(text).toContain("OTP_TEMPLATE_NAME=login_code\n");
    expect(text.match(/^JWT_AUDIENCE=/gm)).toHaveLength(1);
    const gateway = loadGatewayConfig(envFileToRecord(text));
    expect(gateway.OTP_TEMPLATE_NAME).toBe("login_code");
    expect(gateway.BROADCAST_RATE_PER_SECOND).toBe(200);
    expect(gateway.LOG_LEVEL).toBe("warn");
    expect(gateway.JWT_AUDIENCE).toBe("billing-api");
    expect(gateway.WHATSAPP_TRANSPORT).toBe("cloud");
  });

  it("the renderer never lets a setting replace a secret's line", () => {
    const apiSecret = "0123456789abcdef".repeat(4);
    expect(() => renderGatewayEnvFile({ apiSecret, settings: { API_SECRET: "ab".repeat(32) } })).toThrow(
      /settings\.API_SECRET is written from its own field/,
    );
    expect(
      renderGatewayEnvFile({ apiSecret, settings: { JWT_ISSUER: "acme" } }).match(/^JWT_ISSUER=.*$/gm),
    ).toEqual(["JWT_ISSUER=acme"]);
  });
});
