import { describe, expect, it } from "vitest";
import { EDGE_IDENTITY_KEY_FILE, EDGE_STEP, GATEWAY_ENV_FILE } from "../render/bundle.js";
import { IDENTITY_KEY_OBJECT } from "../render/edge-js.js";
import {
  isSecretWrapper,
  keyOf,
  ofType,
  type ProgramRun,
  resolve,
  runProgram,
  unwrapSecrets,
} from "./support/program.js";
import { type StackConfig, stackConfig, TEST_SECRETS } from "./support/stack-config.js";

// The edge's token key on the VM (issue 14, identity first): derived from the gateway's env file, a secret from
// end to end — stdin of one command that writes it root 0600, a secret digest among the nginx step's triggers —
// and never in user data, a command line, a copied bundle file or a plain output.

const COMMAND = "command:remote:Command";
const COPY = "command:remote:CopyToRemote";
const API_SECRET = TEST_SECRETS["wagate:apiSecret"];
const PREVIOUS = "9d".repeat(32);

function devWith(change: (c: StackConfig) => void): StackConfig {
  const config = stackConfig("dev");
  change(config);
  return config;
}

/** Paths of plain (not secret-wrapped) strings that contain one of `needles`. */
function plainPaths(value: unknown, needles: readonly string[], path = ""): string[] {
  if (isSecretWrapper(value)) return [];
  if (typeof value === "string") return needles.some((n) => value.includes(n)) ? [path] : [];
  if (Array.isArray(value)) return value.flatMap((v, i) => plainPaths(v, needles, `${path}[${i}]`));
  if (typeof value === "object" && value !== null)
    return Object.entries(value).flatMap(([k, v]) => plainPaths(v, needles, path ? `${path}.${k}` : k));
  return [];
}

const named = (run: ProgramRun, name: string) => {
  const found = run.resources.find((r) => r.type === COMMAND && r.name === name);
  if (!found) throw new Error(`no command ${name}`);
  return found;
};
const keyOfRun = (run: ProgramRun) =>
  JSON.parse(String(unwrapSecrets(named(run, "wagate-edge-identity-key").inputs.stdin))) as Record<
    string,
    unknown
  >;

async function leaks(run: ProgramRun, needles: readonly string[]): Promise<string[]> {
  const found = run.resources.flatMap((r) => plainPaths(r.inputs, needles).map((p) => `${keyOf(r)}: ${p}`));
  for (const [name, value] of Object.entries(run.outputs)) {
    const resolved = await resolve(value);
    if (!resolved.secret)
      found.push(...plainPaths(resolved.value, needles).map((p) => `output ${name}: ${p}`));
  }
  return found;
}

describe("the edge's token key on the VM", () => {
  it("travels only as the secret stdin of one command that writes it 0600, without logs", async () => {
    const run = await runProgram("dev", stackConfig("dev"));
    const writer = named(run, "wagate-edge-identity-key");
    expect(isSecretWrapper(writer.inputs.stdin)).toBe(true);
    expect(keyOfRun(run)).toEqual({
      secret: API_SECRET,
      issuer: "wagate",
      audience: "wagate",
      toleranceSeconds: 30,
    });
    const inputs = unwrapSecrets(writer.inputs) as Record<string, unknown>;
    expect(inputs.logging).toBe("none");
    expect(String(inputs.create)).toContain(`'${EDGE_IDENTITY_KEY_FILE}'`);
    expect(String(inputs.create)).toContain("umask 077");
    expect(String(inputs.create)).not.toContain(API_SECRET);
    expect(writer.dependencies).toContain(`${COMMAND}::wagate-ready`);
    // Written before nginx's step, which re-runs (reloads nginx) when the key's digest changes.
    const nginx = named(run, `wagate-${EDGE_STEP}`);
    expect(nginx.dependencies.some((d) => d.startsWith(COMMAND))).toBe(true);
    const order = ofType(run, COMMAND).map((r) => r.name);
    expect(order.indexOf("wagate-edge-identity-key")).toBeLessThan(order.indexOf(`wagate-${EDGE_STEP}`));
    expect(isSecretWrapper(nginx.inputs.triggers)).toBe(true);
    const triggers = unwrapSecrets(nginx.inputs.triggers) as string[];
    expect(triggers).toHaveLength(4);
    expect(triggers.join(" ")).not.toContain(API_SECRET);
  });

  it("is nowhere in plain text: not in user data, commands, copied files or outputs", async () => {
    const run = await runProgram("dev", stackConfig("dev"));
    const key = JSON.stringify(keyOfRun(run));
    expect(await leaks(run, [API_SECRET, key])).toEqual([]);
    for (const vm of ofType(run, "aws:ec2/instance:Instance"))
      expect(String(unwrapSecrets(vm.inputs.userData))).not.toContain(API_SECRET);
    for (const command of ofType(run, COMMAND))
      expect(String(unwrapSecrets(command.inputs.create)), command.name).not.toContain(API_SECRET);
    // The bundle's nginx.conf names the file and holds no key.
    const conf = ofType(run, COPY).find((c) => c.name === "wagate-file-nginx-nginx-conf");
    const text = String((unwrapSecrets(conf?.inputs.source) as { text?: string }).text);
    expect(text).toContain(`js_preload_object ${IDENTITY_KEY_OBJECT} from ${EDGE_IDENTITY_KEY_FILE};`);
    expect(text).not.toContain(API_SECRET);
    // The scan finds what it looks for where it is: inside the secret stdin.
    expect(plainPaths(unwrapSecrets(named(run, "wagate-edge-identity-key").inputs), [API_SECRET])).toEqual([
      "stdin",
    ]);
    expect(EDGE_IDENTITY_KEY_FILE).not.toBe(GATEWAY_ENV_FILE);
  });

  it("during a rotation holds both secrets, still only as secrets", async () => {
    const run = await runProgram(
      "dev",
      devWith((c) => {
        c.values["wagate:apiSecretPrevious"] = PREVIOUS;
        c.secretKeys.push("wagate:apiSecretPrevious");
      }),
    );
    expect(keyOfRun(run)).toMatchObject({ secret: API_SECRET, previousSecret: PREVIOUS });
    expect(await leaks(run, [API_SECRET, PREVIOUS])).toEqual([]);
  });

  it("follows the issuer, audience and clock tolerance the gateway runs with (wagate:gateway)", async () => {
    const run = await runProgram(
      "dev",
      devWith((c) => {
        c.values["wagate:gateway"] = JSON.stringify({
          JWT_ISSUER: "https://auth.example.com",
          JWT_AUDIENCE: "wagate-prod",
          JWT_CLOCK_TOLERANCE_SECONDS: 5,
        });
      }),
    );
    expect(keyOfRun(run)).toEqual({
      secret: API_SECRET,
      issuer: "https://auth.example.com",
      audience: "wagate-prod",
      toleranceSeconds: 5,
    });
  });
});
