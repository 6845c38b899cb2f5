import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { nodeBaseImage } from "../../scripts/lib/box/root.js";

// The gateway image ships no Debian 12 layer: its one pinned base is a Debian 13 ("trixie") Node image, and every
// stage starts from it (or from an earlier stage), so no other base can slip in beside it. The box replaces the
// base with one it makes from its own trixie root, which says so in its tag.

const dockerfile = readFileSync(new URL("../../gateway/Dockerfile", import.meta.url), "utf8");

describe("the gateway image's base", () => {
  it("is a pinned Debian 13 Node image, the only base of every stage", () => {
    const defaults = [...dockerfile.matchAll(/^ARG NODE_IMAGE=(\S+)$/gm)].map((m) => m[1]);
    expect(defaults).toEqual([expect.stringMatching(/^node:\d+\.\d+\.\d+-trixie-slim$/)]);
    const stages: string[] = [];
    for (const [, from, name] of dockerfile.matchAll(/^FROM (\S+)(?: AS (\S+))?$/gim)) {
      // The Dockerfile's own ARG reference, spelled as written there (not a template string).
      const fromArg = from === "$" + "{NODE_IMAGE}";
      expect(fromArg || stages.includes(from ?? ""), `FROM ${from}`).toBe(true);
      if (name) stages.push(name);
    }
    expect(stages).toContain("runtime");
  });

  it("is, in the box, one made from the box's trixie root", () => {
    expect(nodeBaseImage()).toMatch(/^localhost\/wagate-node-base:trixie/);
  });
});
