import { ConfigError, loadConfig } from "../../gateway/src/config.js";
import { type IdentityKey, renderIdentityKey } from "./edge-js.js";

// The edge's token key on the VM, derived from the gateway's env file (gateway-env.ts) with the gateway's own
// config schema: the edge verifies with exactly the secret, issuer, audience and clock tolerance the gateway
// runs with, defaults included, whatever `wagate:gateway` overrides. A secret like the env file: it travels the
// same way (stdin of one command, written root 0600), never in the host bundle, a command line or a log.

/** `KEY=value` lines as podman's `--env-file` reads them (blank lines and `#` comments skipped, the last wins). */
export function parseEnvFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split("\n")) {
    if (line.trim() === "" || line.trimStart().startsWith("#")) continue;
    const eq = line.indexOf("=");
    if (eq <= 0) throw new Error("gateway env: a line is not KEY=value");
    env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return env;
}

/** What the edge needs from the gateway's env file; throws naming the variable (never its value) when invalid. */
export function identityKeyOfEnvFile(envFile: string): IdentityKey {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(parseEnvFile(envFile));
  } catch (error) {
    if (error instanceof ConfigError) throw new Error(`edge identity key: ${error.message}`);
    throw error;
  }
  return {
    secret: config.API_SECRET,
    ...(config.API_SECRET_PREVIOUS ? { previousSecret: config.API_SECRET_PREVIOUS } : {}),
    issuer: config.JWT_ISSUER,
    audience: config.JWT_AUDIENCE,
    toleranceSeconds: config.JWT_CLOCK_TOLERANCE_SECONDS,
  };
}

/** The key file's content (js_preload_object's JSON) for the gateway's env file. */
export function renderEdgeIdentityKey(envFile: string): string {
  return renderIdentityKey(identityKeyOfEnvFile(envFile));
}
