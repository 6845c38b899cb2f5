import { afterEach, describe, expect, it, vi } from "vitest";
import { runProgram } from "./support/program.js";
import { protectionProblems } from "./support/protection-check.js";
import { stackConfig } from "./support/stack-config.js";

// The protection check of the stack suites (support/protection-check.ts) reads the options the engine receives:
// run against a broken copy of the program — prod whose components are handed "nothing to guard" — it fails,
// naming each resource that lost its protection.

afterEach(() => {
  vi.doUnmock("../plan/protection.js");
});

describe("protection check", () => {
  it("fails on a prod program that no longer protects its data", async () => {
    vi.doMock("../plan/protection.js", async (importOriginal) => {
      const real = await importOriginal<typeof import("../plan/protection.js")>();
      return { ...real, protectionFor: (stack: string) => real.protectionFor(stack, "nothing") };
    });
    const broken = await runProgram("prod", stackConfig("prod"));
    const problems = protectionProblems(broken, true);
    expect(problems).toContain("aws:ebs/volume:Volume::wagate-data-volume: protect is false, must be true");
    expect(problems).toContain(
      "aws:ebs/volume:Volume::wagate-data-volume: retainOnDelete is false, must be true",
    );
    expect(problems).toContain("aws:s3/bucket:Bucket::wagate-backups-bucket: protect is false, must be true");
    expect(problems).toContain(
      "aws:s3/bucket:Bucket::wagate-backups-bucket: retainOnDelete is false, must be true",
    );
    expect(problems).toContain("aws:ec2/eip:Eip::wagate-ip: protect is false, must be true");
    expect(problems).toContain("tls:index/privateKey:PrivateKey::wagate-ssh: protect is false, must be true");
  });

  it("fails on a dev program that protects its data (it could not be destroyed in one go)", async () => {
    vi.doMock("../plan/protection.js", async (importOriginal) => {
      const real = await importOriginal<typeof import("../plan/protection.js")>();
      return {
        ...real,
        protectionFor: (_stack: string, holds: "data" | "identity") => real.protectionFor("prod", holds),
      };
    });
    const broken = await runProgram("dev", stackConfig("dev"));
    expect(protectionProblems(broken, false)).toContain(
      "aws:ebs/volume:Volume::wagate-data-volume: protect is true, must be false",
    );
  });
});
