import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalStack, startLocalStack } from "../lib/local-stack.js";
import { freePort } from "../lib/processes.js";
import { runSmoke } from "../ops/smoke-checks.js";
import { runScript } from "./helpers/run-script.js";

// `npm run smoke -- --local` against the whole local stack of `npm run local`: Pebble-issued certificate through
// certbot, nginx rendered for the VM, the gateway, the admin token from .local/stack.json.

let dir: string;
let stack: LocalStack;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "wagate-smoke-local-"));
  await chmod(dir, 0o755); // nginx's workers serve the ACME webroot from below it
  stack = await startLocalStack({
    rootDir: join(dir, "local"),
    httpPort: await freePort(),
    httpsPort: await freePort(),
  });
});

afterAll(async () => {
  await stack?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("smoke --local", () => {
  // runSmoke first: the CLI run ends with the rate-limit burst, which leaves this client's bucket empty.
  it("is the same as runSmoke(), the function a Pulumi local.Command or CI can call", async () => {
    const { readFile } = await import("node:fs/promises");
    const results = await runSmoke({
      url: stack.baseUrl,
      httpUrl: stack.httpUrl,
      address: "127.0.0.1",
      ca: await readFile(stack.caCert, "utf8"),
      skip: ["rate-limit"],
    });
    expect(results.filter((r) => r.status === "fail")).toEqual([]);
    expect(results.find((r) => r.name === "token-accepted")?.status).toBe("skip");
  });

  it("passes every check against the local stack, reading stack.json", async () => {
    const result = await runScript("smoke.ts", ["--local-file", join(stack.rootDir, "stack.json")]);
    expect(result.stderr).toBe("");
    expect(result.stdout).toMatch(/token-accepted\s+authenticated \(404\)/);
    expect(result.stdout).toMatch(/certificate\s+trusted for gateway\.test/);
    expect(result.stdout).toMatch(/: 14 passed, 0 failed, 0 skipped\n$/);
    expect(result.code).toBe(0);
  });
});
