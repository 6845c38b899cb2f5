import { describe, expect, it } from "vitest";
import { boxFiguresLine, runBox } from "../../scripts/lib/box/box-run.js";

// The deploy path for real: a bare Debian 13 box (debootstrap + systemd-nspawn, its own network namespace) with a
// separate data disk (a loop image at a stable device path), provisioned over SSH with the stack's remote actions,
// then checked: HTTPS with a Pebble certificate, the smoke checks, container hardening, a fail2ban ban in the
// box's nftables, a restorable backup, no failed unit, a second run that changes nothing, a changed nginx file
// that re-runs only nginx's step, identity first at the edge (the edge's 401 for bad tokens, `sudo wagate token`'s
// passes) and an API_SECRET rotation (both keys pass the edge while the previous one is kept, then only the new). Then the box is replaced by a brand-new root against the same data disk: the
// message accepted before is sent after, once; the pending OTP verifies; the certificate is the same. runBox tears
// the box, its disk, its network and every process down itself, also when it throws.

describe("Debian 13 box provisioned over SSH, then replaced", () => {
  it("provisions, passes every check, is idempotent, and a new box keeps the data", {
    timeout: 30 * 60_000,
  }, async () => {
    const lines: string[] = [];
    const report = await runBox({ replace: true, say: (l) => lines.push(l) });
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
      "edge-identity",
      "container-hardening",
      "fail2ban-active",
      "fail2ban-sshd-journal",
      "fail2ban-bans-flood",
      "wrong-host-key-refused",
      "backup-restorable",
      "no-failed-units",
      "second-run-changes-nothing",
      "second-run-restarts-nothing",
      "changed-file-reloads-only-nginx",
      "rotation-reruns-secret-steps",
      "rotation-reloads-nginx",
      "rotation-edge-accepts-both-keys",
      "rotation-end-reruns-secret-steps",
      "rotation-end-reloads-nginx",
      "rotation-end-edge-refuses-previous",
      "replace-mounts-kept-volume",
      "replace-message-sent-once",
      "replace-otp-verifies",
      "replace-certificate-kept",
    ])
      expect(names).toContain(name);
    expect(report.changedFileRan.filter((id) => !id.startsWith("file-"))).toEqual(["nginx", "health"]);
    expect(report.figures.imageBytes).toBeGreaterThan(0);
    expect(report.figures.dataKept).toBe(true);
    expect(boxFiguresLine(report.figures)).toMatch(
      /^box figures: os=debian-13 fresh=\d+\.\d rerun=\d+\.\d replace=\d+\.\d data-kept=yes$/,
    );
    expect(report.ok).toBe(true);
  });
});
