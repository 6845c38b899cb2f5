import { parseArgs } from "node:util";
import { runBox } from "./lib/box/box-run.js";

// npm run box [-- --keep]: a bare Debian 12 box (debootstrap + systemd-nspawn) provisioned over SSH exactly as
// `pulumi up` provisions the VM, then checked and measured. Exits 0 only if every check held.

const usage = "usage: npm run box [-- --keep]";
let keep = false;
try {
  const { values } = parseArgs({
    options: { keep: { type: "boolean" }, help: { type: "boolean" } },
    strict: true,
  });
  if (values.help) {
    console.log(`${usage}\n  --keep  leave the box running after the checks (Ctrl-C tears it down)`);
    process.exit(0);
  }
  keep = values.keep ?? false;
} catch (error) {
  console.error(`box: ${(error as Error).message}\n${usage}`);
  process.exit(2);
}

let interrupted = false;
const interrupt = (teardown: () => Promise<void>) => {
  const stop = async () => {
    if (interrupted) return;
    interrupted = true;
    console.error("box: interrupted, tearing down");
    await teardown();
    process.exit(130);
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
};

try {
  const report = await runBox({ keep, onTeardown: interrupt });
  const failed = report.checks.filter((c) => c.status === "fail");
  console.log(
    failed.length
      ? `box: ${failed.length} check(s) failed: ${failed.map((c) => c.name).join(", ")}`
      : "box: every check held",
  );
  // With --keep, the proxy and Pebble keep serving the box until Ctrl-C runs the teardown registered above.
  if (keep) await new Promise(() => undefined);
  process.exitCode = report.ok ? 0 : 1;
} catch (error) {
  console.error(`box: ${(error as Error).message}`);
  process.exitCode = 1;
}
