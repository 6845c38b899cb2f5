import { describe, expect, it } from "vitest";
import { runBox } from "../../scripts/lib/box/box-run.js";

// The deploy path for real: a bare Debian 12 box (debootstrap + systemd-nspawn, its own network namespace)
// provisioned over SSH with the stack's remote actions, then checked: HTTPS with a Pebble certificate, the
// smoke checks, container hardening, a fail2ban ban in the box's nftables, a restorable backup, no failed unit,
// a second run that changes nothing, and a changed nginx file that re-runs only nginx's step. runBox tears the
// box, its network and every process down itself, also when it throws.

describe("Debian 12 box provisioned over SSH", () => {
  it("provisions, passes every check, and is idempotent", { timeout: 15 * 60_000 }, async () => {
    const lines: string[] = [];
    const report = await runBox({ say: (l) => lines.push(l) });
    const failed = report.checks.filter((c) => c.status === "fail").map((c) => `${c.name}: ${c.detail}`);
    expect(failed, lines.join("\n")).toEqual([]);
    const names = report.checks.map((c) => c.name);
    for (const name of [
      "certificate",
      "tls1.0-refused",
      "waf-blocks-sqli",
      "rate-limit",
      "headers",
      "token-accepted",
      "container-hardening",
      "fail2ban-bans-flood",
      "wrong-host-key-refused",
      "backup-restorable",
      "no-failed-units",
      "second-run-changes-nothing",
      "second-run-restarts-nothing",
      "changed-file-reloads-only-nginx",
    ])
      expect(names).toContain(name);
    expect(report.changedFileRan.filter((id) => !id.startsWith("file-"))).toEqual(["nginx", "health"]);
    expect(report.figures.imageBytes).toBeGreaterThan(0);
    expect(report.ok).toBe(true);
  });
});
