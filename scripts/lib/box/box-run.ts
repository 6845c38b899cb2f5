import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SCOPES } from "../../../gateway/src/auth/index.js";
import { mintToken } from "../../../gateway/src/auth/tokens.js";
import { type FakeGraph, startFakeGraph } from "../../../gateway/test/support/fake-graph.js";
import {
  buildContextDigest,
  listBuildContext,
  stageBuildContext,
} from "../../../infra/plan/build-context.js";
import { planProvision, type RemoteAction, remoteActions } from "../../../infra/plan/provision.js";
import { type HostBundleInput, renderHostBundle } from "../../../infra/render/bundle.js";
import { renderEdgeIdentityKey } from "../../../infra/render/edge-identity-key.js";
import { renderGatewayEnvFile } from "../../../infra/render/gateway-env.js";
import { rateLimitSchema, wafSchema } from "../../../infra/render/settings.js";
import { LOCAL_GATEWAY_IMAGE } from "../../../infra/render/systemd.js";
import type { CheckResult } from "../../ops/smoke-checks.js";
import { REPO_ROOT } from "../local-stack.js";
import { type Pebble, startPebble } from "../pebble.js";
import { requireBinary } from "../processes.js";
import {
  type BoxCheckContext,
  backupRestorable,
  containerHardening,
  edgeVerifiesTokens,
  fail2banActive,
  floodBanned,
  noFailedUnits,
  rotationAtEdge,
  smokeChecks,
  sshdJailCounts,
} from "./checks.js";
import {
  BOX_ADDRESS,
  BOX_CACHE_DIR,
  BOX_DOMAIN,
  HOST_ADDRESS,
  NODE_BASE_TAR_IN_BOX,
  PROXY_PORT,
  SSH_USER,
} from "./constants.js";
import { BOX_DATA_DEVICE, createDataDisk, type DataDisk } from "./data-disk.js";
import { type ExecuteResult, executeActions, type Secrets } from "./executor.js";
import { wrongHostKeyRefused } from "./host-key-check.js";
import { type BootedBox, type BootOptions, bootBox, prepareBox } from "./machine.js";
import { createBoxNetwork, removeBoxNetwork } from "./network.js";
import { type BoxProxy, startBoxProxy } from "./proxy.js";
import { type BoxShell, boxShell } from "./remote.js";
import { replaceBox } from "./replace.js";
import { ensureBoxRoot, ensureNodeBaseTar, nodeBaseImage } from "./root.js";

// `npm run box`: a bare Debian 13 box with a separate data disk, provisioned over SSH with the stack's own remote
// sequence, then checked, re-run unchanged, re-run with one rendered file changed, measured, and torn down. With
// `replace`, a brand-new root is then provisioned against the kept data disk (replace.ts).

export interface BoxFigures {
  /** The box's own OS, read from its /etc/os-release (`debian-13`), not assumed from how its root was built. */
  os: string;
  /** From starting the bare box to the health step's 200 over HTTPS. */
  bareToHealthySeconds: number;
  /** The whole sequence again with the same bundle (every action forced). */
  secondRunSeconds: number;
  imageBytes: number;
  /** Whether the first run built the image (false: podman's storage kept from an earlier box had it). */
  imageBuilt: boolean;
  stepSeconds: Record<string, number>;
  /** With `replace`: the gateway's downtime across the replacement, as a client saw it. */
  replaceSeconds?: number;
  /** With `replace`: the message, the pending OTP and the certificate survived. */
  dataKept?: boolean;
}

export interface BoxReport {
  checks: CheckResult[];
  figures: BoxFigures;
  /** Actions that ran after one rendered nginx file changed. */
  changedFileRan: string[];
  ok: boolean;
}

export interface BoxRunOptions {
  say?: (line: string) => void;
  /** Leave the box running; the caller ends it with the returned teardown. */
  keep?: boolean;
  /** Build the image from scratch (no podman storage kept from earlier boxes): the figure of a new VM. */
  cold?: boolean;
  /** After the checks, replace the box by a brand-new one against the kept data disk (replace.ts). */
  replace?: boolean;
  /** Receives the teardown as soon as there is something to tear down (a CLI calls it on Ctrl-C). */
  onTeardown?: (teardown: () => Promise<void>) => void;
}

const PODMAN_GLOBAL = ["--runtime", "crun", "--cgroup-manager", "cgroupfs"];
const BOX_ULIMITS = ["--ulimit=nofile=4096:4096", "--ulimit=nproc=4096:4096"];
const CHANGE_LINE =
  /^wagate\[\w+\]: (changed|installing|starting|reloading|\(re\)starting|requesting|building|pulling|removed|no certificate yet|formatting|moving|stopping)/m;

export function boxBundleInput(
  pebble: { directoryUrl: string; listenerCaPem: string },
  proxyUrl: string,
  burst = 20,
): HostBundleInput {
  return {
    stack: "box",
    domain: BOX_DOMAIN,
    acmeEmail: "ops@example.com",
    acmeServer: pebble.directoryUrl,
    rateLimit: rateLimitSchema.parse({ perIp: { rate: 10, burst } }),
    waf: wafSchema.parse({}),
    backupBucket: "",
    awsRegion: "eu-central-1",
    acmeCaPem: pebble.listenerCaPem,
    dataDevice: BOX_DATA_DEVICE,
    podman: {
      // What a systemd-nspawn box needs (ENVIRONMENT.md): crun with cgroupfs, no cgroups, the host's network
      // (no network namespace can be made inside), no kernel keyring.
      globalArgs: PODMAN_GLOBAL,
      cgroups: "disabled",
      network: "host",
      keyring: false,
      extraBuildArgs: [
        `--build-arg=NODE_IMAGE=${nodeBaseImage()}`,
        "--network=host",
        // buildah (1.28) ignores containers.conf's keyring=false, and crun cannot create one in the box.
        "--isolation=chroot",
        // apt and npm in the build stage reach Debian's mirror and the npm registry through the host-side proxy.
        `--build-arg=http_proxy=${proxyUrl}`,
        `--build-arg=https_proxy=${proxyUrl}`,
        // podman 5 raises a container's open-file and process limits to 1048576; the box's hard limits are lower.
        ...BOX_ULIMITS,
      ],
      extraRunArgs: [...BOX_ULIMITS],
    },
  };
}

/** `<ID>-<VERSION_ID>` of an /etc/os-release (`debian-13` on trixie); os-release(5) values may be quoted. */
export function osOfRelease(release: string): string {
  const field = (name: string) =>
    new RegExp(`^${name}=["']?([^"'\n]*)["']?$`, "m").exec(release)?.[1] || "unknown";
  return `${field("ID")}-${field("VERSION_ID")}`;
}

/** The one line `npm run box` ends with (a contract: scripts and the README quote it). */
export function boxFiguresLine(f: BoxFigures): string {
  const s = (n: number | undefined) => (n === undefined ? "-" : n.toFixed(1));
  const kept = f.dataKept === undefined ? "-" : f.dataKept ? "yes" : "no";
  return `box figures: os=${f.os} fresh=${s(f.bareToHealthySeconds)} rerun=${s(f.secondRunSeconds)} replace=${s(f.replaceSeconds)} data-kept=${kept}`;
}

/**
 * The gateway's env file in the box: Meta's Cloud API is the fake Graph API on the host's side of the veth, and
 * the outbox retries every few seconds (the replacement check keeps a message waiting for Meta for a minute or
 * two; the default backoff would reach minutes).
 */
export function boxGatewayEnv(apiSecret: string, graphBaseUrl: string, apiSecretPrevious?: string): string {
  return `${renderGatewayEnvFile({
    apiSecret,
    ...(apiSecretPrevious ? { apiSecretPrevious } : {}),
    whatsapp: {
      accessToken: "box-access-token",
      phoneNumberId: "106540352242922",
      appSecret: "box-app-secret",
      verifyToken: "box-verify-token",
    },
  })}GRAPH_API_BASE_URL=${graphBaseUrl}\nOUTBOX_BACKOFF_MAX_MS=3000\nOUTBOX_MAX_ATTEMPTS=100\n`;
}

/** What the stack feeds the box's provisioning on stdin: the env file and the edge's key derived from it. */
export function boxSecrets(apiSecret: string, graphBaseUrl: string, apiSecretPrevious?: string): Secrets {
  const gatewayEnv = boxGatewayEnv(apiSecret, graphBaseUrl, apiSecretPrevious);
  return { gatewayEnv, edgeIdentityKey: renderEdgeIdentityKey(gatewayEnv) };
}

/** The change lines (`changed …`, `reloading …`) the provisioning script printed. */
export function changeLines(result: ExecuteResult): string[] {
  return result.outcomes.flatMap((o) => o.output.split("\n").filter((l) => CHANGE_LINE.test(l)));
}

/** Main pids and start stamps of the services, plus nginx's workers (a reload replaces them). */
async function serviceState(sh: BoxShell): Promise<Record<string, string>> {
  const out = await sh(
    [
      'for u in nginx fail2ban wagate-gateway; do echo "$u $(systemctl show $u -p MainPID -p ActiveEnterTimestampMonotonic --value | paste -sd/)"; done',
      'echo "nginx-workers $(pgrep -P $(systemctl show nginx -p MainPID --value) | sort | paste -sd,)"',
      'echo "dpkg $(stat -c %Y /var/lib/dpkg/status)"',
      'echo "certificate $(sha256sum /etc/letsencrypt/live/wagate/fullchain.pem | cut -c1-16)"',
    ].join("; "),
  );
  return Object.fromEntries(
    out
      .trim()
      .split("\n")
      .map((l) => [l.split(" ")[0] ?? "", l.split(" ").slice(1).join(" ")]),
  );
}

function compare(
  name: string,
  before: Record<string, string>,
  after: Record<string, string>,
  mustChange: string[],
): CheckResult {
  const problems: string[] = [];
  for (const key of Object.keys(before)) {
    const changed = before[key] !== after[key];
    if (changed && !mustChange.includes(key)) problems.push(`${key} changed`);
    if (!changed && mustChange.includes(key)) problems.push(`${key} did not change`);
  }
  return problems.length
    ? { name, status: "fail", detail: problems.join("; ") }
    : {
        name,
        status: "pass",
        detail: mustChange.length
          ? `only ${mustChange.join(", ")} changed`
          : "no service restarted, no package, no certificate",
      };
}

export async function runBox(
  options: BoxRunOptions = {},
): Promise<BoxReport & { teardown: () => Promise<void> }> {
  const say = options.say ?? ((line: string) => process.stdout.write(`${line}\n`));
  for (const [binary, pkg] of [
    ["debootstrap", "debootstrap"],
    ["systemd-nspawn", "systemd-container"],
    ["ssh", "openssh-client"],
    ["ssh-keygen", "openssh-client"],
    ["ip", "iproute2"],
    ["sqlite3", "sqlite3"],
  ] as const)
    await requireBinary(binary, pkg);
  if (process.getuid?.() !== 0)
    throw new Error("the box needs root (debootstrap, systemd-nspawn, network namespaces)");

  const [root, baseTar] = await Promise.all([ensureBoxRoot(), ensureNodeBaseTar()]);
  const workDir = await mkdtemp(join(tmpdir(), "wagate-box-"));
  let proxy: BoxProxy | undefined;
  let pebble: Pebble | undefined;
  let box: BootedBox | undefined;
  let graph: FakeGraph | undefined;
  let dataDisk: DataDisk | undefined;
  let networkCreated = false;
  const teardown = async () => {
    await box?.stop().catch((e: Error) => say(`box: stopping the box: ${e.message}`));
    await dataDisk?.detach();
    await graph?.close();
    await pebble?.stop();
    await proxy?.close();
    // Only what this run made: a refused start must not take down the box another run owns.
    if (networkCreated) await removeBoxNetwork();
    await rm(workDir, { recursive: true, force: true });
  };
  options.onTeardown?.(teardown);
  try {
    await createBoxNetwork();
    networkCreated = true;
    proxy = await startBoxProxy(HOST_ADDRESS, PROXY_PORT);
    pebble = await startPebble({
      dir: join(workDir, "pebble"),
      httpPort: 80,
      listenAddress: HOST_ADDRESS,
      resolveTo: BOX_ADDRESS,
    });
    graph = await startFakeGraph({ host: HOST_ADDRESS });
    dataDisk = await createDataDisk(workDir);
    const pebbleInput = {
      directoryUrl: pebble.directoryUrl,
      listenerCaPem: await readFile(pebble.listenerCaFile, "utf8"),
    };

    const files = listBuildContext(REPO_ROOT);
    const digest = buildContextDigest(REPO_ROOT, files);
    const staged = stageBuildContext(REPO_ROOT, files, join(BOX_CACHE_DIR, "stage"), digest);
    const context = { localDir: staged.dir, digest };
    const actionsFor = (burst: number): RemoteAction[] =>
      remoteActions(
        planProvision(renderHostBundle(boxBundleInput(pebbleInput, proxy?.url ?? "", burst))),
        SSH_USER,
        context,
      );
    const actions = actionsFor(20);
    const apiSecret = randomBytes(32).toString("hex");
    let secrets = boxSecrets(apiSecret, graph.baseUrl);

    const bootOptions: BootOptions = {
      root,
      workDir,
      proxyUrl: proxy.url,
      nodeBaseTar: baseTar,
      imageCache: !options.cold,
      dataDisk,
    };
    const started = performance.now();
    box = await bootBox(bootOptions);
    const sshArgs = box.sshArgs;
    const hostKey = box.hostKey;
    const sh = boxShell(sshArgs);
    const importBaseWith = (sh: BoxShell) => async () => {
      await sh(
        `podman ${PODMAN_GLOBAL.join(" ")} image exists ${nodeBaseImage()} || podman ${PODMAN_GLOBAL.join(" ")} import --quiet --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' ${NODE_BASE_TAR_IN_BOX} ${nodeBaseImage()} >/dev/null`,
      );
    };
    const importBase = importBaseWith(sh);
    const logFile = join(workDir, "steps.log");
    say(`box: provisioning ${BOX_ADDRESS} over SSH (${actions.length} remote actions)`);
    const first = await executeActions(actions, {
      sshArgs,
      hostKey,
      secrets,
      before: { gateway: importBase },
      logFile,
      say,
    });
    const bareToHealthySeconds = (performance.now() - started) / 1000;
    say(`box: bare box to healthy HTTPS in ${bareToHealthySeconds.toFixed(1)} s`);

    const tokenFor = async (secret: string) =>
      (
        await mintToken({
          secret,
          sub: "box",
          scopes: [...SCOPES],
          ttlSeconds: 3600,
          issuer: "wagate",
          audience: "wagate",
        })
      ).token;
    let token = await tokenFor(apiSecret);
    const ctx: BoxCheckContext = { sh, ca: pebble.issuerRootPem, token, workDir };
    const checks: CheckResult[] = [];
    const record = (r: CheckResult | CheckResult[]) => {
      for (const c of [r].flat()) {
        checks.push(c);
        say(`${c.status.toUpperCase().padEnd(4)}  ${c.name.padEnd(26)}  ${c.detail}`);
      }
    };
    record(await smokeChecks(ctx));
    record(await edgeVerifiesTokens(ctx, apiSecret));
    record(await containerHardening(ctx));
    record(await fail2banActive(ctx));
    record(await sshdJailCounts(ctx));
    record(await backupRestorable(ctx));
    record(await noFailedUnits(ctx));

    // Idempotency: the same bundle again, every action forced (what a replaced trigger does).
    const before = await serviceState(sh);
    const secondStarted = performance.now();
    const second = await executeActions(actions, { sshArgs, hostKey, secrets, force: true, logFile });
    const secondRunSeconds = (performance.now() - secondStarted) / 1000;
    const changes = changeLines(second);
    record(
      changes.length
        ? { name: "second-run-changes-nothing", status: "fail", detail: changes.join("; ") }
        : {
            name: "second-run-changes-nothing",
            status: "pass",
            detail: `${second.outcomes.length} actions in ${secondRunSeconds.toFixed(1)} s, no change line`,
          },
    );
    record(compare("second-run-restarts-nothing", before, await serviceState(sh), []));

    // One rendered file changed (nginx's per-IP burst): only what uses it runs, and only nginx reloads.
    const changed = await executeActions(actionsFor(21), {
      sshArgs,
      hostKey,
      secrets,
      previous: first.inputs,
      logFile,
    });
    const changedFileRan = changed.outcomes.filter((o) => o.ran).map((o) => o.id);
    const ranSteps = changedFileRan.filter((id) => !id.startsWith("file-"));
    record(
      ranSteps.join(",") === "nginx,health"
        ? {
            name: "changed-file-reruns-its-steps",
            status: "pass",
            detail: `ran ${changedFileRan.join(", ")}`,
          }
        : {
            name: "changed-file-reruns-its-steps",
            status: "fail",
            detail: `ran ${changedFileRan.join(", ")}`,
          },
    );
    record(compare("changed-file-reloads-only-nginx", before, await serviceState(sh), ["nginx-workers"]));

    // An API_SECRET rotation as the README runs it: a new secret with the previous one kept, then without it.
    // Each run writes both secret files; nginx reloads with the new key file, the gateway restarts.
    const newSecret = randomBytes(32).toString("hex");
    const tokens = { previous: token, current: await tokenFor(newSecret) };
    let inputs = changed.inputs;
    for (const [round, previousKept] of [
      ["rotation", true],
      ["rotation-end", false],
    ] as const) {
      const state = await serviceState(sh);
      secrets = boxSecrets(newSecret, graph.baseUrl, previousKept ? apiSecret : undefined);
      const rotated = await executeActions(actionsFor(21), {
        sshArgs,
        hostKey,
        secrets,
        previous: inputs,
        logFile,
      });
      inputs = rotated.inputs;
      const ran = rotated.outcomes.filter((o) => o.ran).map((o) => o.id);
      record({
        name: `${round}-reruns-secret-steps`,
        status: ran.join(",") === "gateway-env,edge-identity-key,nginx,gateway" ? "pass" : "fail",
        detail: `ran ${ran.join(", ")}`,
      });
      record(
        compare(`${round}-reloads-nginx`, state, await serviceState(sh), ["nginx-workers", "wagate-gateway"]),
      );
      record(
        await rotationAtEdge(
          ctx,
          previousKept ? "rotation-edge-accepts-both-keys" : "rotation-end-edge-refuses-previous",
          tokens,
          previousKept,
        ),
      );
    }
    token = tokens.current;
    ctx.token = token;
    record(await wrongHostKeyRefused(ctx, sshArgs, workDir));
    record(await floodBanned(ctx));
    record(await noFailedUnits(ctx));

    const imageBytes = Number(
      (
        await sh(
          `podman ${PODMAN_GLOBAL.join(" ")} image inspect --format '{{.Size}}' ${LOCAL_GATEWAY_IMAGE}`,
        )
      ).trim(),
    );
    const stepSeconds = Object.fromEntries(
      first.outcomes
        .filter((o) => o.ran && !o.id.startsWith("file-"))
        .map((o) => [o.id, Math.round(o.seconds * 10) / 10]),
    );
    const imageBuilt = first.outcomes.some(
      (o) => o.id === "gateway" && o.output.includes("wagate[gateway]: building"),
    );
    const figures: BoxFigures = {
      // The box's own word for its OS, not how its root was built: the figures line claims what ran.
      os: osOfRelease(await sh("cat /etc/os-release")),
      bareToHealthySeconds,
      secondRunSeconds,
      imageBytes,
      imageBuilt,
      stepSeconds,
    };
    say(
      `box: figures: bare box to healthy HTTPS ${bareToHealthySeconds.toFixed(1)} s (image ${imageBuilt ? "built in the box" : "kept from an earlier box"}); second no-change run ${secondRunSeconds.toFixed(1)} s; image ${(imageBytes / 1e6).toFixed(0)} MB`,
    );
    say(
      `box: steps of the first run: ${Object.entries(stepSeconds)
        .map(([k, v]) => `${k} ${v} s`)
        .join(", ")}`,
    );
    say(
      `box: steps of the second run: ${second.outcomes
        .filter((o) => !o.id.startsWith("file-"))
        .map((o) => `${o.id} ${o.seconds.toFixed(1)} s`)
        .join(", ")}`,
    );
    if (options.replace) {
      const replaced = await replaceBox({
        old: box,
        prepareNew: () => prepareBox({ ...bootOptions, name: "box-new" }),
        actions,
        secrets,
        before: (newSh) => ({ gateway: importBaseWith(newSh) }),
        graph,
        ca: pebble.issuerRootPem,
        token,
        workDir,
        logFile,
        say,
      });
      box = replaced.box;
      record(replaced.checks);
      figures.replaceSeconds = replaced.downtimeSeconds;
      figures.dataKept = replaced.dataKept;
      say(`box: replacement: new box provisioned in ${replaced.provisionSeconds.toFixed(1)} s`);
    }
    const ok = checks.every((c) => c.status !== "fail");
    if (!options.keep) await teardown();
    else
      say(
        `box: kept running. Reach it with: ssh -i ${box.keyFile} -o UserKnownHostsFile=${join(workDir, "known_hosts")} ${SSH_USER}@${BOX_ADDRESS}\n     https://${BOX_DOMAIN} at ${BOX_ADDRESS} (CA: ${pebble.issuerRootFile}); Ctrl-C tears it down`,
      );
    return { checks, figures, changedFileRan, ok, teardown };
  } catch (error) {
    await teardown();
    throw error;
  }
}
