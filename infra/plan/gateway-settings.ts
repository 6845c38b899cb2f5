import { CONFIG_VARIABLES, isSecretVariable, variableProblem } from "../../gateway/src/config.js";

// `wagate:gateway`: the gateway's own settings, keyed by its environment variable names, checked at preview by
// the gateway's own schema (gateway/src/config.ts, the one the process runs at start) and written to its env file.
// Refused, each with one line `wagate:gateway: <KEY> …` that never quotes the value: a name the gateway does
// not read, a value its schema refuses, a secret (those have encrypted stack keys of their own), and the
// variables the deployment itself decides (listen address, paths, transport).

export const GATEWAY_SETTINGS_KEY = "wagate:gateway";

/** The stack's encrypted key for each secret variable. */
const SECRET_STACK_KEYS: Readonly<Record<string, string>> = {
  API_SECRET: "wagate:apiSecret",
  API_SECRET_PREVIOUS: "wagate:apiSecretPrevious",
  WHATSAPP_ACCESS_TOKEN: "wagate:whatsappAccessToken",
  WHATSAPP_APP_SECRET: "wagate:whatsappAppSecret",
  WHATSAPP_VERIFY_TOKEN: "wagate:whatsappVerifyToken",
};

/** Variables the deployment sets itself, and why a stack cannot. */
export const DEPLOYMENT_VARIABLES: Readonly<Record<string, string>> = {
  HOST: "is set by the container's unit (the gateway is published on 127.0.0.1 only)",
  PORT: "is set by the container's unit (nginx proxies to it)",
  TRUST_PROXY: "is set by the container's unit (nginx is the only peer)",
  DATABASE_PATH: "is set by the container's unit (the data volume)",
  SANDBOX_OUTBOX_PATH: "is set by the container's unit (the data volume)",
  WHATSAPP_TRANSPORT:
    "follows from the WhatsApp keys: cloud when wagate:whatsappPhoneNumberId and the three WhatsApp secrets are set",
  WHATSAPP_PHONE_NUMBER_ID: "has its own key: set wagate:whatsappPhoneNumberId",
};

export interface GatewaySettings {
  /** Variable → value, as the env file writes it. */
  settings: Record<string, string>;
  /** One line each, `wagate:gateway: <KEY> …`. */
  problems: string[];
}

function problemOf(name: string, value: unknown): string | undefined {
  if (isSecretVariable(name)) {
    const key = SECRET_STACK_KEYS[name];
    return key
      ? `is a secret and is never a plain setting: set it with \`pulumi config set --secret ${key}\``
      : "is a secret and is never a plain setting";
  }
  const decided = DEPLOYMENT_VARIABLES[name];
  if (decided) return decided;
  if (!CONFIG_VARIABLES.includes(name)) return "is not a setting of the gateway (a typo?)";
  if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean")
    return "must be a string, a number or true/false";
  const text = String(value);
  if (/[\r\n\0]/.test(text)) return "must be one line";
  return variableProblem(name, text);
}

/**
 * Validates the raw `wagate:gateway` value (Pulumi hands a YAML map to the program as JSON text). Absent: no
 * settings, the gateway's defaults.
 */
export function parseGatewaySettings(raw: string | undefined): GatewaySettings {
  if (raw === undefined) return { settings: {}, problems: [] };
  let map: unknown;
  try {
    map = JSON.parse(raw);
  } catch {
    map = undefined;
  }
  if (map === null || typeof map !== "object" || Array.isArray(map)) {
    return {
      settings: {},
      problems: [
        `${GATEWAY_SETTINGS_KEY}: must be a map of the gateway's variables, e.g. { LOG_LEVEL: warn }`,
      ],
    };
  }
  const settings: Record<string, string> = {};
  const problems: string[] = [];
  for (const [name, value] of Object.entries(map).sort(([a], [b]) => a.localeCompare(b))) {
    const problem = problemOf(name, value);
    if (problem) problems.push(`${GATEWAY_SETTINGS_KEY}: ${name} ${problem}`);
    else settings[name] = String(value);
  }
  return { settings, problems };
}
