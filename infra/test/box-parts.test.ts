import { request } from "node:http";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { boxBundleInput, boxFiguresLine, changeLines, osOfRelease } from "../../scripts/lib/box/box-run.js";
import { watchDowntime } from "../../scripts/lib/box/downtime.js";
import { actionInputs } from "../../scripts/lib/box/executor.js";
import { type BoxProxy, isAllowedConnect, isAllowedUrl, startBoxProxy } from "../../scripts/lib/box/proxy.js";
import { planProvision, remoteActions } from "../plan/provision.js";
import { renderHostBundle } from "../render/bundle.js";

// The box's parts that run without a box: the proxy's allowlist (real HTTP on loopback), what makes the box
// executor re-run an action, and the box's bundle (the test-only inputs reach it).

const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const bundleInput = (burst = 20) =>
  boxBundleInput(
    { directoryUrl: "https://10.231.77.1:14000/dir", listenerCaPem: pem },
    "http://10.231.77.1:3128",
    burst,
  );

describe("box proxy", () => {
  let proxy: BoxProxy;
  beforeAll(async () => {
    proxy = await startBoxProxy("127.0.0.1");
  });
  afterAll(async () => {
    await proxy.close();
  });

  it("lets through Debian's mirror over HTTP and the npm registry's CONNECT only", () => {
    expect(isAllowedUrl("http://deb.debian.org/debian/dists/trixie/InRelease")).toBe(true);
    expect(isAllowedUrl("https://deb.debian.org/debian/")).toBe(false);
    expect(isAllowedUrl("http://deb.debian.org:8080/debian/")).toBe(false);
    expect(isAllowedUrl("http://example.com/")).toBe(false);
    expect(isAllowedUrl("http://169.254.169.254/latest/meta-data/")).toBe(false);
    expect(isAllowedConnect("registry.npmjs.org:443")).toBe(true);
    expect(isAllowedConnect("github.com:443")).toBe(false);
    expect(isAllowedConnect("registry.npmjs.org:22")).toBe(false);
  });

  it("answers 403 to any other URL, and records it", async () => {
    const port = Number(new URL(proxy.url).port);
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        { host: "127.0.0.1", port, path: "http://169.254.169.254/latest/meta-data/", method: "GET" },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on("error", reject);
      req.end();
    });
    expect(status).toBe(403);
    expect(proxy.refused).toContain("GET http://169.254.169.254/latest/meta-data/");
  });

  it("refuses a CONNECT tunnel to anything but the npm registry", async () => {
    const port = Number(new URL(proxy.url).port);
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, "127.0.0.1", () =>
        socket.write("CONNECT github.com:443 HTTP/1.1\r\nHost: github.com:443\r\n\r\n"),
      );
      let text = "";
      socket.on("data", (b) => {
        text += b.toString();
      });
      socket.on("end", () => resolve(text));
      socket.on("error", reject);
    });
    expect(answer.split("\r\n")[0]).toBe("HTTP/1.1 403 Forbidden");
    expect(proxy.refused).toContain("CONNECT github.com:443");
  });
});

describe("box executor", () => {
  const secrets = { gatewayEnv: "API_SECRET=aa\n", edgeIdentityKey: '{"secret":"aa"}\n' };
  const actions = () => remoteActions(planProvision(renderHostBundle(bundleInput())), "admin");

  it("re-runs a copy when its content changes, a step when its triggers change, a secret's file and step when it changes", () => {
    const a = actions();
    const b = remoteActions(planProvision(renderHostBundle(bundleInput(21))), "admin");
    const differing = a
      .filter((x, i) => actionInputs(x, secrets) !== actionInputs(b[i] ?? x, secrets))
      .map((x) => x.id);
    expect(differing.filter((id) => !id.startsWith("file-"))).toEqual(["nginx", "health"]);
    expect(differing.some((id) => id.startsWith("file-nginx"))).toBe(true);
    const changedBy = (other: typeof secrets) =>
      a.filter((x) => actionInputs(x, secrets) !== actionInputs(x, other)).map((x) => x.id);
    expect(changedBy({ ...secrets, gatewayEnv: "API_SECRET=bb\n" })).toEqual(["gateway-env", "gateway"]);
    expect(changedBy({ ...secrets, edgeIdentityKey: '{"secret":"bb"}\n' })).toEqual([
      "edge-identity-key",
      "nginx",
    ]);
  });

  it("walks the stack's own list: the box's bundle carries the test-only inputs and nothing else differs in kind", () => {
    const bundle = renderHostBundle(bundleInput());
    expect(bundle.files["certbot/acme-ca.pem"]).toBe(pem);
    expect(bundle.files["systemd/wagate-gateway.service"]).toContain("--network=host");
    expect(bundle.files["vars.sh"]).toContain("--build-arg=NODE_IMAGE=localhost/wagate-node-base:trixie");
    expect(actions()[0]?.id).toBe("ready");
    expect(actions().at(-1)?.id).toBe("health");
  });

  it("finds the script's change lines and ignores the rest", () => {
    const result = {
      inputs: new Map(),
      outcomes: [
        {
          id: "nginx",
          ran: true,
          seconds: 1,
          output: "wagate[nginx]: nginx unchanged\nwagate[nginx]: reloading nginx\n",
        },
        { id: "packages", ran: true, seconds: 1, output: "wagate[packages]: all 14 packages present\n" },
      ],
    };
    expect(changeLines(result)).toEqual(["wagate[nginx]: reloading nginx"]);
  });
});

describe("box figures", () => {
  const figures = {
    os: "debian-13",
    bareToHealthySeconds: 91.24,
    secondRunSeconds: 3.46,
    imageBytes: 1,
    imageBuilt: false,
    stepSeconds: {},
  };

  it("end with the one line the issue names", () => {
    expect(boxFiguresLine({ ...figures, replaceSeconds: 70.06, dataKept: true })).toBe(
      "box figures: os=debian-13 fresh=91.2 rerun=3.5 replace=70.1 data-kept=yes",
    );
    expect(boxFiguresLine({ ...figures, replaceSeconds: 70, dataKept: false })).toMatch(/ data-kept=no$/);
    expect(boxFiguresLine(figures)).toBe(
      "box figures: os=debian-13 fresh=91.2 rerun=3.5 replace=- data-kept=-",
    );
  });

  it("name the OS the box's /etc/os-release names, not the one its root was meant to be", () => {
    expect(
      osOfRelease(
        'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nVERSION_ID="13"\nVERSION_CODENAME=trixie\nID=debian\n',
      ),
    ).toBe("debian-13");
    expect(osOfRelease('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_ID="12"\nID=debian\n')).toBe(
      "debian-12",
    );
    expect(osOfRelease("ID=debian\n")).toBe("debian-unknown");
    expect(boxFiguresLine({ ...figures, os: "debian-12" })).toMatch(/^box figures: os=debian-12 /);
  });

  it("downtime is the outage a prober saw: none while every probe answers, the gap once they stop", async () => {
    const steady = watchDowntime(async () => true, 5);
    await new Promise((r) => setTimeout(r, 50));
    expect((await steady.stop()).downtimeSeconds).toBe(0);

    let up = true;
    const outage = watchDowntime(async () => up, 5);
    await new Promise((r) => setTimeout(r, 30));
    up = false;
    await new Promise((r) => setTimeout(r, 100));
    up = true;
    await outage.recovered(5_000);
    const result = await outage.stop();
    expect(result.failures).toBeGreaterThan(0);
    expect(result.downtimeSeconds).toBeGreaterThan(0);
  });
});
