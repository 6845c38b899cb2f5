import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../config.js";
import { stackConfig } from "./support/stack-config.js";

// What an operator follows when an instance, the data volume or the region is lost is the README's Operating
// section: its recovery table gives each failure a recovery point, a recovery time and the way back, and every stack
// setting the README tells them to set is one the stack reads (the preview refuses an unknown key, so a renamed
// setting would leave a restore step failing in the middle of a recovery).

const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");

/** The rows of the first Markdown table after `heading`, as trimmed cells. */
function tableAfter(heading: string): string[][] {
  const start = readme.indexOf(heading);
  expect(start, heading).toBeGreaterThan(-1);
  const lines = readme.slice(start).split("\n").slice(1);
  const first = lines.findIndex((l) => l.startsWith("|"));
  const rows: string[][] = [];
  for (const line of lines.slice(first)) {
    if (!line.startsWith("|")) break;
    if (/^\|\s*-/.test(line)) continue;
    rows.push(
      line
        .slice(1, -1)
        .split(" | ")
        .map((c) => c.trim()),
    );
  }
  return rows;
}

describe("README, Operating", () => {
  it("gives the recovery point, the recovery time and the way back for a lost instance, volume and region", () => {
    const [header, ...rows] = tableAfter("### Recovery: what is lost and how long it takes");
    expect(header).toEqual(["failure", "recovery point (RPO)", "recovery time (RTO, estimate)", "how"]);
    for (const failure of ["instance lost", "data volume lost", "region lost"]) {
      const row = rows.find((r) => r[0]?.startsWith(failure));
      expect(row, failure).toBeDefined();
      expect(row?.length, failure).toBe(4);
      for (const cell of row ?? []) expect(cell.length, `${failure}: ${cell}`).toBeGreaterThan(3);
      // A recovery time in minutes or hours.
      expect(row?.[2], failure).toMatch(/\d.*\b(min|hours?)\b/);
    }
    // The hourly snapshots are what bounds a lost volume's recovery point.
    expect(rows.find((r) => r[0]?.startsWith("data volume lost"))?.[1]).toMatch(/≤ 1 hour/);
    expect(readme).toContain("**Restore the data volume from a snapshot.**");
    expect(readme).toContain("### Restore from a backup");
    expect(readme).toContain("### Upgrading the OS or resizing the VM");
  });

  it("names only stack settings the stack reads", () => {
    const keys = [...new Set([...readme.matchAll(/\bwagate:([a-z][A-Za-z0-9]*)\b/g)].map((m) => m[1] ?? ""))];
    expect(keys).toContain("dataSnapshotId");
    const unknown = keys.filter((key) => {
      const config = stackConfig("dev");
      config.values[`wagate:${key}`] = "x";
      try {
        parseConfig(config.values, new Set(config.secretKeys), "dev");
        return false;
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        return error.message.includes(`wagate:${key}: unknown setting`);
      }
    });
    expect(unknown).toEqual([]);
  });
});
