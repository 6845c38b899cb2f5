import { parseArgs } from "node:util";
import { runBox } from "./lib/box/box-run.js";

// npm run box [-- --keep]: a bare Debian 12 box (debootstrap + systemd-nspawn) provisioned over SSH exactly as
// `pulumi up` provisions the VM, then checked and measured. Exits 0 only if every check held.

const usage = "usage: npm run box [-- --keep] [--cold]";
let keep = false;
let cold = false;
try {
  const { values } = parseArgs({
    options: { keep: { type: "boolean" }, cold: { type: "boolean" }, help: { type: "boolean" } },
    strict: true,
  });
  if (values.help) {
    console.log(
      `${usage}\n  --keep  leave the box running after the checks (Ctrl-C tears it down)\n  --cold  build the gateway image from scratch (no podman storage kept from earlier boxes)`,
    );
    process.exit(0);
  }
  keep = values.keep ?? false;
  cold = values.cold ?? false;
} catch (error) {
  console.error(`box: ${(error as Error).message}\n${usage}`);
  process.exit(2);
}

let interrupted = false;
// Ctrl-C while provisioning is an interruption (130); with --keep after the checks, it ends a finished run.
let exitCode = 130;
const interrupt = (teardown: () => Promise<void>) => {
  const stop = async () => {
    if (interrupted) return;
    interrupted = true;
    console.error(exitCode === 130 ? "box: interrupted, tearing down" : "box: tearing down");
    await teardown();
    process.exit(exitCode);
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
};

try {
  const report = await runBox({ keep, cold, onTeardown: interrupt });
  const failed = report.checks.filter((c) => c.status === "fail");
  console.log(
    failed.length
      ? `box: ${failed.length} check(s) failed: ${failed.map((c) => c.name).join(", ")}`
      : "box: every check held",
  );
  // With --keep, the proxy and Pebble keep serving the box until Ctrl-C runs the teardown registered above.
  exitCode = report.ok ? 0 : 1;
  if (keep) await new Promise(() => undefined);
  process.exitCode = report.ok ? 0 : 1;
} catch (error) {
  console.error(`box: ${(error as Error).message}`);
  process.exitCode = 1;
}
