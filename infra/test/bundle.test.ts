import { describe, expect, it } from "vitest";
import {
  GATEWAY_ENV_FILE,
  GATEWAY_STEP,
  HOST_PACKAGES,
  type HostBundleInput,
  NGINX_ALLOCATOR_DROP_IN,
  REMOTE_BUNDLE_DIR,
  renderHostBundle,
} from "../render/bundle.js";
import { certbotIssueArgs } from "../render/certbot.js";
import { renderGatewayEnvFile } from "../render/gateway-env.js";
import { NGINX_ALLOCATOR_PACKAGE } from "../render/nginx-allocator.js";
import { PROVISION_STEPS } from "../render/provision.js";
import { rateLimitSchema } from "../render/settings.js";
import { gatewayRunArgs, renderGatewayUnit } from "../render/systemd.js";
import { stagingBundleInput } from "./fixtures/host-bundle.js";

// The host bundle is the contract the Pulumi components and the box test execute: its steps, what each step
// uses, and the guarantee that no secret is in it.

const base: HostBundleInput = stagingBundleInput;

/** Which steps' `uses` hash changes between two bundles (what Pulumi would re-run). */
function rerunSteps(a: HostBundleInput, b: HostBundleInput): string[] {
  const x = renderHostBundle(a);
  const y = renderHostBundle(b);
  const key = (bundle: typeof x, name: string) => {
    const step = bundle.steps.find((s) => s.name === name);
    return JSON.stringify(step?.uses.map((f) => [f, bundle.files[f]]));
  };
  return x.steps.map((s) => s.name).filter((name) => key(x, name) !== key(y, name));
}

describe("renderHostBundle", () => {
  it("has the steps in order, each a root command on the bundle with no secret, using files that exist", () => {
    const bundle = renderHostBundle(base);
    expect(bundle.remoteDir).toBe(REMOTE_BUNDLE_DIR);
    expect(bundle.steps.map((s) => s.name)).toEqual([...PROVISION_STEPS]);
    expect(bundle.steps.map((s) => s.name)).toContain(GATEWAY_STEP);
    for (const step of bundle.steps) {
      expect(step.command).toBe(`bash ${REMOTE_BUNDLE_DIR}/provision.sh ${step.name}`);
      expect(step.uses.length).toBeGreaterThan(0);
      for (const used of step.uses) expect(Object.keys(bundle.files)).toContain(used);
    }
    expect(bundle.files["provision.sh"]).toMatch(/^#!\/bin\/bash\n/);
  });

  it("renders nginx, fail2ban, certbot, systemd and backup files for the VM's paths", () => {
    const files = renderHostBundle(base).files;
    expect(files["nginx/nginx.conf"]).toContain("server_name api.example.com");
    expect(files["nginx/nginx.conf"]).toContain("/etc/letsencrypt/live/wagate/fullchain.pem");
    expect(files["fail2ban/jail.d/wagate.local"]).toContain("logpath = /var/log/nginx/access.json");
    expect(files["fail2ban/jail.d/wagate.local"]).toContain("banaction = nftables-multiport");
    expect(files["certbot/cli.ini"]).toContain(
      "server = https://acme-staging-v02.api.letsencrypt.org/directory",
    );
    expect(files["certbot/deploy-hook.sh"]).toContain("systemctl reload nginx");
    expect(files["systemd/wagate-gateway.service"]).toContain(`--env-file=${GATEWAY_ENV_FILE}`);
    expect(files["backup/backup.env"]).toContain("BACKUP_BUCKET=wagate-staging-backups");
    expect(files["backup/backup.env"]).toContain("BACKUP_PREFIX=staging");
    expect(files["certbot/acme-ca.pem"]).toBeUndefined();
  });

  it("installs the Debian 13 packages the rendered files rely on", () => {
    const files = renderHostBundle(base).files;
    const all = Object.values(files).join("\n");
    // Debian 13 has no rsyslog: the sshd jail reads the journal, which fail2ban 1.1 does through python3-systemd.
    expect(files["fail2ban/jail.d/wagate.local"]).toMatch(/^\[sshd\]\nenabled = true\nbackend = systemd$/m);
    const needs: Array<[boolean, string]> = [
      [/^backend = systemd$/m.test(all), "python3-systemd"],
      [/\bjs_import\b|\bjs_set\b/.test(all), "libnginx-mod-http-js"],
      [/\bmodsecurity on;/.test(all), "libnginx-mod-http-modsecurity"],
      [/modsecurity-crs/.test(all), "modsecurity-crs"],
      [/\bpodman\b/.test(files["systemd/wagate-gateway.service"] ?? ""), "podman"],
      [/nftables/.test(all), "nftables"],
    ];
    for (const [used, pkg] of needs) {
      expect(used, pkg).toBe(true);
      expect(HOST_PACKAGES, pkg).toContain(pkg);
    }
  });

  it("starts nginx with its allocator preloaded: the package, the drop-in, and the step that restarts nginx for it", () => {
    const bundle = renderHostBundle(base);
    expect(HOST_PACKAGES).toContain(NGINX_ALLOCATOR_PACKAGE);
    expect(bundle.files[NGINX_ALLOCATOR_DROP_IN]).toContain(
      '[Service]\nEnvironment="LD_PRELOAD=/usr/$LIB/libjemalloc.so.2"\n',
    );
    const uses = (name: string) => bundle.steps.find((s) => s.name === name)?.uses ?? [];
    expect(uses("nginx")).toContain(NGINX_ALLOCATOR_DROP_IN);
    expect(uses("data")).not.toContain(NGINX_ALLOCATOR_DROP_IN);
    // A reload keeps the master and its allocator: the step restarts nginx when the drop-in changed.
    expect(bundle.files["provision.sh"]).toMatch(
      /if unit nginx\.service\.d\/wagate-allocator\.conf; then restart=0; fi[\s\S]*elif \(\(restart == 0\)\); then\n.*\n\s+systemctl restart nginx/,
    );
  });

  it("issues with the configured ACME server: production, staging or a URL", () => {
    const argsOf = (acmeServer: HostBundleInput["acmeServer"]) =>
      renderHostBundle({ ...base, acmeServer }).files["certbot/certonly.args"]?.split("\n") ?? [];
    const server = (args: string[]) => args[args.indexOf("--server") + 1];
    expect(server(argsOf("production"))).toBe("https://acme-v02.api.letsencrypt.org/directory");
    expect(server(argsOf("staging"))).toBe("https://acme-staging-v02.api.letsencrypt.org/directory");
    expect(server(argsOf("https://10.0.0.5:14000/dir"))).toBe("https://10.0.0.5:14000/dir");
    expect(argsOf("production")).toEqual([
      ...certbotIssueArgs({
        domain: "api.example.com",
        email: "ops@example.com",
        acmeServer: "production",
        webroot: "/var/www/acme",
      }),
      "",
    ]);
  });

  it("changing one input re-runs only the steps that depend on it (and the final health check)", () => {
    expect(rerunSteps(base, { ...base })).toEqual([]);
    expect(
      rerunSteps(base, { ...base, rateLimit: rateLimitSchema.parse({ perIp: { rate: 20, burst: 40 } }) }),
    ).toEqual(["nginx", "health"]);
    expect(rerunSteps(base, { ...base, acmeEmail: "security@example.com" })).toEqual([
      "certificate",
      "health",
    ]);
    expect(rerunSteps(base, { ...base, backupBucket: "other-bucket" })).toEqual(["backups", "health"]);
    const pinned = `registry.example.com/wagate/gateway@sha256:${"a".repeat(64)}`;
    expect(rerunSteps(base, { ...base, gatewayImage: pinned })).toContain("gateway");
  });

  it("a test box's private ACME CA and podman flags reach certbot and the unit, and only there", () => {
    const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const bundle = renderHostBundle({
      ...base,
      acmeServer: "https://10.0.0.1:14000/dir",
      acmeCaPem: pem,
      podman: {
        globalArgs: ["--runtime", "crun", "--cgroup-manager", "cgroupfs"],
        cgroups: "disabled",
        network: "host",
        keyring: false,
      },
    });
    expect(bundle.files["certbot/acme-ca.pem"]).toBe(pem);
    expect(bundle.files["systemd/certbot.service.d/wagate-acme-ca.conf"]).toContain("REQUESTS_CA_BUNDLE=");
    expect(bundle.files["systemd/wagate-gateway.service"]).toContain(
      "ExecStart=/usr/bin/podman --runtime crun --cgroup-manager cgroupfs run",
    );
    const unit = bundle.files["systemd/wagate-gateway.service"] ?? "";
    expect(unit).toContain("--cgroups=disabled");
    // Host network: no port publishing, the gateway binds the loopback address itself.
    expect(unit).toContain("--network=host --env=HOST=127.0.0.1 --env=PORT=3000");
    expect(unit).not.toContain("--publish");
    expect(bundle.files["containers/wagate.conf"]).toContain("keyring = false");
    expect(bundle.steps.find((s) => s.name === "gateway")?.uses).toContain("containers/wagate.conf");
    expect(renderHostBundle(base).files["containers/wagate.conf"]).toBeUndefined();
    expect(bundle.steps.find((s) => s.name === "certificate")?.uses).toContain("certbot/acme-ca.pem");
  });

  it("refuses bad input naming the field", () => {
    expect(() => renderHostBundle({ ...base, acmeEmail: "not-an-email" })).toThrow(/acmeEmail/);
    expect(() => renderHostBundle({ ...base, gatewayImage: "wagate/gateway:latest" })).toThrow(
      /gatewayImage must be pinned by digest/,
    );
    expect(() => renderHostBundle({ ...base, stack: "bad stack" })).toThrow(/stack/);
    expect(() => renderHostBundle({ ...base, awsRegion: "Europe" })).toThrow(/AWS region/);
  });

  it("holds no secret: the gateway's secrets go only into the env file", () => {
    const secret = "f".repeat(64);
    const env = renderGatewayEnvFile({
      apiSecret: secret,
      whatsapp: {
        accessToken: "EAAG-token-value",
        phoneNumberId: "1234567890",
        appSecret: "a".repeat(32),
        verifyToken: "verify-me",
      },
    });
    expect(env).toContain(`API_SECRET=${secret}\n`);
    expect(env).toContain("WHATSAPP_TRANSPORT=cloud\n");
    const bundle = renderHostBundle(base);
    const everything = JSON.stringify(bundle);
    for (const value of [secret, "EAAG-token-value", "verify-me", "a".repeat(32)])
      expect(everything).not.toContain(value);
    expect(everything).not.toMatch(/API_SECRET|WHATSAPP_ACCESS_TOKEN/);
  });
});

describe("renderGatewayEnvFile", () => {
  it("sandbox when no WhatsApp settings are given; refuses weak or multi-line values without echoing them", () => {
    const env = renderGatewayEnvFile({ apiSecret: "0123456789abcdef".repeat(4) });
    expect(env.split("\n").filter(Boolean).sort()).toEqual(
      [
        "API_SECRET=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "JWT_AUDIENCE=wagate",
        "JWT_ISSUER=wagate",
        "WHATSAPP_TRANSPORT=sandbox",
      ].sort(),
    );
    expect(() => renderGatewayEnvFile({ apiSecret: "abcd" })).toThrow(/apiSecret must be at least 32 bytes/);
    const rotating = renderGatewayEnvFile({
      apiSecret: "0123456789abcdef".repeat(4),
      apiSecretPrevious: "fedcba9876543210".repeat(4),
    });
    expect(rotating).toContain(`API_SECRET_PREVIOUS=${"fedcba9876543210".repeat(4)}\n`);
    const injected = "x\nAPI_SECRET=attacker";
    let message = "";
    try {
      renderGatewayEnvFile({
        apiSecret: "0123456789abcdef".repeat(4),
        whatsapp: { accessToken: injected, phoneNumberId: "1", appSecret: "s", verifyToken: "v" },
      });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/whatsapp\.accessToken must be one line/);
    expect(message).not.toContain("attacker");
  });
});

describe("the gateway's systemd unit", () => {
  it("runs the container non-root, read-only, without capabilities, on loopback only, with the env file", () => {
    const args = gatewayRunArgs({
      image: "localhost/wagate-gateway:latest",
      upstream: { host: "127.0.0.1", port: 3000 },
      envFile: GATEWAY_ENV_FILE,
    });
    for (const flag of [
      "--user=10001:10001",
      "--read-only",
      "--cap-drop=all",
      "--security-opt=no-new-privileges",
      "--publish=127.0.0.1:3000:3000",
      `--env-file=${GATEWAY_ENV_FILE}`,
      "--pull=never",
      "--env=TRUST_PROXY=true",
    ]) {
      expect(args).toContain(flag);
    }
    expect(args.some((a) => a.startsWith("--tmpfs=/tmp:"))).toBe(true);
    expect(args.some((a) => a.startsWith("--volume=/var/lib/wagate:/data"))).toBe(true);
    expect(args.at(-1)).toBe("localhost/wagate-gateway:latest");
    const unit = renderGatewayUnit({
      image: "localhost/wagate-gateway:latest",
      upstream: { host: "127.0.0.1", port: 3000 },
      envFile: GATEWAY_ENV_FILE,
    });
    expect(unit).toContain("Restart=on-failure");
    expect(unit).toContain("--cidfile=%t/%n.ctr-id");
    expect(() =>
      gatewayRunArgs({ image: "x", upstream: { host: "0.0.0.0", port: 3000 }, envFile: GATEWAY_ENV_FILE }),
    ).toThrow(/not a loopback address/);
  });
});
