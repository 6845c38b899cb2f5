import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FakeSockets, fakeSockets } from "./support/fake-wa-socket.js";
import { eventually, startTestGateway, type TestGateway } from "./support/gateway.js";

// `wagate link <number>` (npm run link -- <number>): prints the QR code in the terminal and waits for the phone.

const root = join(import.meta.dirname, "../..");
let fake: FakeSockets;
let gw: TestGateway;

beforeAll(async () => {
  fake = fakeSockets((socket, index) => {
    if (index === 0) socket.qr("2@cli-test-qr-payload");
  });
  gw = await startTestGateway({}, { webSocketFactory: fake.factory });
  const admin = await gw.token(["admin"]);
  expect(
    (await gw.request("POST", "/v1/numbers", { token: admin, body: { name: "sales", transport: "web" } }))
      .status,
  ).toBe(201);
});
afterAll(async () => {
  await gw?.stop();
});

function run(args: string[], env: Record<string, string>) {
  const child = spawn(process.execPath, ["--import", "tsx", "gateway/src/cli/link.ts", ...args], {
    cwd: root,
    env: { PATH: process.env.PATH ?? "", ...env },
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => {
    stdout += c.toString();
  });
  child.stderr.on("data", (c: Buffer) => {
    stderr += c.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}

describe("wagate link", () => {
  it("prints the QR code in the terminal and reports the linked phone", async () => {
    const port = new URL(gw.url).port;
    const cli = run(["sales"], { API_SECRET: gw.config.API_SECRET, PORT: port });
    try {
      await eventually(
        async () => (cli.stdout().includes("Linked devices") ? true : undefined),
        20_000,
        "the QR",
      );
      // qrcode-terminal's small mode draws with half blocks.
      expect(cli.stdout()).toMatch(/[▀▄█]{10,}/);
      expect(cli.stdout()).not.toContain(gw.config.API_SECRET);
      fake.sockets[0]?.paired("14155550999");
      (await fake.opened(1)).open("14155550999");
      expect(await cli.exited).toBe(0);
      expect(cli.stdout()).toContain("linked: sales is +14155550999");
    } finally {
      cli.child.kill("SIGKILL");
    }
  }, 40_000);

  it("names the numbers when the one asked for does not exist, and needs API_SECRET", async () => {
    const port = new URL(gw.url).port;
    const unknown = run(["nobody"], { API_SECRET: gw.config.API_SECRET, PORT: port });
    expect(await unknown.exited).toBe(1);
    expect(unknown.stderr()).toContain("no number named nobody; the numbers are: default, sales");
    const noSecret = run(["sales"], { PORT: port });
    expect(await noSecret.exited).toBe(2);
    expect(noSecret.stderr()).toContain("API_SECRET is not set");
  }, 40_000);
});
