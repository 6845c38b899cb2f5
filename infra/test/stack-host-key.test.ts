import { afterEach, describe, expect, it, vi } from "vitest";
import { runProgram, TEST_HOST_KEY } from "./support/program.js";
import { stackConfig } from "./support/stack-config.js";
import { hostKeyProblems } from "./support/stack-suite.js";

// The stack suites' host-key check (every remote command and copy pins the key the console lookup printed), run
// against broken copies of the program: one whose connections pin nothing, one that pins a key other than the
// console's. Both must fail it, naming the resources.

const OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICyAg29IutQIXJAiuZ+rYNJdOFh+f3ISqFSgCxehfxsA";

afterEach(() => {
  vi.doUnmock("../components/host-key.js");
  vi.doUnmock("../plan/host-key.js");
});

describe("host key check", () => {
  it("fails on a program whose remote connections pin no host key", async () => {
    vi.doMock("../components/host-key.js", async (importOriginal) => {
      const real = await importOriginal<typeof import("../components/host-key.js")>();
      const pulumi = await import("@pulumi/pulumi");
      class Unpinned extends real.HostKey {
        override readonly publicKey = pulumi.output(undefined as unknown as string);
      }
      return { ...real, HostKey: Unpinned };
    });
    const problems = hostKeyProblems(await runProgram("dev", stackConfig("dev")), TEST_HOST_KEY);
    expect(problems).toContain("command:remote:Command::wagate-ready: hostKey undefined");
    expect(problems).toContain("command:remote:Command::wagate-gateway-env: hostKey undefined");
    expect(problems.some((p) => p.startsWith("command:remote:CopyToRemote::wagate-file-"))).toBe(true);
  });

  it("fails on a program that pins a key other than the one on the console", async () => {
    vi.doMock("../plan/host-key.js", async (importOriginal) => {
      const real = await importOriginal<typeof import("../plan/host-key.js")>();
      return { ...real, hostKeyFromConsole: () => OTHER_KEY };
    });
    const problems = hostKeyProblems(await runProgram("dev", stackConfig("dev")), TEST_HOST_KEY);
    expect(problems).toContain(`command:remote:Command::wagate-ready: hostKey ${JSON.stringify(OTHER_KEY)}`);
  });
});
