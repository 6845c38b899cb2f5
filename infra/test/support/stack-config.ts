import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";

// A stack's configuration as the Pulumi CLI hands it to the program: every value a string, structured values as
// JSON, plus the secrets a user would set with `pulumi config set --secret` (test values, never real ones).

export const STACKS = ["dev", "staging", "prod"] as const;
export type StackName = (typeof STACKS)[number];

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

/** Distinctive, well-formed test secrets: the leak scans look for these exact strings. */
export const TEST_SECRETS = {
  "wagate:apiSecret": "5ec2e7a91b0c4d6f8a3e2b1c0d9f8e7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e",
  "wagate:whatsappAccessToken": "EAATESTACCESSTOKENx7q9wz3kk2v8m4p6r1t5y0u",
  "wagate:whatsappAppSecret": "testappsecret9f8e7d6c5b4a3f2e1d",
  "wagate:whatsappVerifyToken": "test-verify-token-3b9c1a7e5d",
} as const;

export const TEST_PHONE_NUMBER_ID = "109876543210987";

export function readStackFile(stack: StackName): Record<string, string> {
  const doc = parse(readFileSync(`${ROOT}Pulumi.${stack}.yaml`, "utf8")) as {
    config?: Record<string, unknown>;
  };
  const raw: Record<string, string> = {};
  for (const [key, value] of Object.entries(doc.config ?? {})) {
    raw[key] = typeof value === "string" ? value : JSON.stringify(value);
  }
  return raw;
}

export interface StackConfig {
  values: Record<string, string>;
  secretKeys: string[];
}

/** The stack file plus the test secrets (stored as secrets) and the WhatsApp phone number id. */
export function stackConfig(stack: StackName): StackConfig {
  return {
    values: {
      ...readStackFile(stack),
      ...TEST_SECRETS,
      "wagate:whatsappPhoneNumberId": TEST_PHONE_NUMBER_ID,
    },
    secretKeys: Object.keys(TEST_SECRETS),
  };
}
