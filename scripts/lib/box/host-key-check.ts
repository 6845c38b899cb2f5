import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { RemoteAction } from "../../../infra/plan/provision.js";
import type { CheckResult } from "../../ops/smoke-checks.js";
import type { BoxCheckContext } from "./checks.js";
import { executeActions, HOST_KEY_REFUSED } from "./executor.js";
import { run } from "./run.js";

// The box's proof that the executor's pinned host key is enforced (what Pulumi's `connection.hostKey` does for a
// VM): a first action pinned to another key must fail with ssh's refusal, and the command it carried must not have
// run in the box. The run's own actions pin the box's real key, so reaching this check proves that key works.

const MARKER = "/tmp/wagate-host-key-probe";

export async function wrongHostKeyRefused(
  ctx: BoxCheckContext,
  sshArgs: readonly string[],
  workDir: string,
): Promise<CheckResult> {
  const name = "wrong-host-key-refused";
  const keyFile = join(workDir, "other_host_ed25519");
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "not-the-box", "-f", keyFile]);
  const otherKey = (await readFile(`${keyFile}.pub`, "utf8")).split(" ").slice(0, 2).join(" ");
  const probe: RemoteAction = {
    kind: "run",
    id: "ready",
    command: `touch ${MARKER}`,
    after: [],
    triggers: [],
    waitForHost: true,
  };
  await ctx.sh(`rm -f ${MARKER}`);
  const outcome = await executeActions([probe], {
    sshArgs,
    hostKey: otherKey,
    secrets: { gatewayEnv: "", edgeIdentityKey: "" },
  }).then(
    () => "ran",
    (error: Error) =>
      HOST_KEY_REFUSED.test(error.message) ? "refused" : `failed otherwise: ${error.message}`,
  );
  const ran = (await ctx.sh(`test -e ${MARKER} && echo yes || echo no`)).trim() === "yes";
  if (outcome === "refused" && !ran)
    return { name, status: "pass", detail: "another pinned key: ssh refused the box, the probe did not run" };
  return { name, status: "fail", detail: `another pinned key: ${outcome}; probe ran in the box: ${ran}` };
}
