import { parseArgs } from "node:util";
import { boxFiguresLine, runBox } from "./lib/box/box-run.js";

// npm run box [-- --replace] [--keep] [--cold]: a bare Debian 13 box (debootstrap + systemd-nspawn) with a
// separate data disk, provisioned over SSH exactly as `pulumi up` provisions the VM, then checked and measured;
// with --replace, a brand-new box root is then provisioned against the kept data disk. Exits 0 only if every
// check held. The last line is always `box figures: …`.

const usage = "usage: npm run box [-- --replace] [--keep] [--cold]";
let keep = false;
let cold = false;
let replace = false;
try {
  const { values } = parseArgs({
    options: {
      keep: { type: "boolean" },
      cold: { type: "boolean" },
      replace: { type: "boolean" },
      help: { type: "boolean" },
    },
    strict: true,
  });
  if (values.help) {
    console.log(
      `${usage}\n  --replace  then power the box off and provision a brand-new root against the kept data disk: a message accepted before is sent after (once), a pending OTP verifies, the certificate is not re-issued\n  --keep     leave the box running after the checks (Ctrl-C tears it down)\n  --cold     build the gateway image from scratch (no podman storage kept from earlier boxes)`,
    );
    process.exit(0);
  }
  keep = values.keep ?? false;
  cold = values.cold ?? false;
  replace = values.replace ?? false;
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
  const report = await runBox({ keep, cold, replace, onTeardown: interrupt });
  const failed = report.checks.filter((c) => c.status === "fail");
  console.log(
    failed.length
      ? `box: ${failed.length} check(s) failed: ${failed.map((c) => c.name).join(", ")}`
      : "box: every check held",
  );
  console.log(boxFiguresLine(report.figures));
  // With --keep, the proxy and Pebble keep serving the box until Ctrl-C runs the teardown registered above.
  exitCode = report.ok ? 0 : 1;
  if (keep) await new Promise(() => undefined);
  process.exitCode = report.ok ? 0 : 1;
} catch (error) {
  console.error(`box: ${(error as Error).message}`);
  // The run stopped before anything was measured, the OS included.
  console.log("box figures: os=- fresh=- rerun=- replace=- data-kept=no");
  process.exitCode = 1;
}
