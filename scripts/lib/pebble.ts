import { execFile } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { freePort, requireBinary, type Started, startProcess, stopAll, waitForPort } from "./processes.js";

// A throwaway ACME CA on loopback: Pebble plus pebble-challtestsrv as its DNS server (every name resolves to
// 127.0.0.1), so certbot can run the real HTTP-01 flow against the nginx we render, offline.

const execFileAsync = promisify(execFile);

export interface PebbleOptions {
  /** Scratch directory for Pebble's listener CA, its config and logs. */
  dir: string;
  /** The port Pebble's validator connects to for HTTP-01: where nginx serves `/.well-known/acme-challenge/`. */
  httpPort: number;
  /** Address Pebble's ACME listener binds (default 127.0.0.1; a test box reaches it on the host's veth address). */
  listenAddress?: string;
  /** What every DNS name resolves to for Pebble's validator (default 127.0.0.1; a test box: the box's address). */
  resolveTo?: string;
}

export interface Pebble {
  /** ACME directory URL to give certbot as `--server`. */
  directoryUrl: string;
  /** CA file that verifies Pebble's own HTTPS listener (certbot needs it as `REQUESTS_CA_BUNDLE`). */
  listenerCaFile: string;
  /** PEM of the root that issued certificates chain to (regenerated at each Pebble start). */
  issuerRootPem: string;
  /** The same root, written to a file under `dir`. */
  issuerRootFile: string;
  processes: readonly Started[];
  stop(): Promise<void>;
}

/** A CA and a `localhost`/127.0.0.1 certificate it signs, for Pebble's listener only. */
async function makeListenerCertificate(
  dir: string,
  extraIp?: string,
): Promise<{ caFile: string; certFile: string; keyFile: string }> {
  const caKey = join(dir, "listener-ca.key");
  const caFile = join(dir, "listener-ca.pem");
  const keyFile = join(dir, "listener.key");
  const csr = join(dir, "listener.csr");
  const certFile = join(dir, "listener.pem");
  const ext = join(dir, "listener.ext");
  const openssl = (args: string[]) => execFileAsync("openssl", args);
  await openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", caKey]);
  await openssl([
    "req",
    "-x509",
    "-new",
    "-key",
    caKey,
    "-days",
    "2",
    "-subj",
    "/CN=wagate test listener CA",
    "-out",
    caFile,
  ]);
  await openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", keyFile]);
  await openssl(["req", "-new", "-key", keyFile, "-subj", "/CN=localhost", "-out", csr]);
  await writeFile(
    ext,
    `subjectAltName=DNS:localhost,IP:127.0.0.1${extraIp && extraIp !== "127.0.0.1" ? `,IP:${extraIp}` : ""}\nextendedKeyUsage=serverAuth\n`,
  );
  await openssl([
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    caFile,
    "-CAkey",
    caKey,
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    ext,
    "-out",
    certFile,
  ]);
  return { caFile, certFile, keyFile };
}

/** GET over HTTPS trusting only `ca`; Node's fetch cannot take a per-request CA without extra packages. */
export function httpsGetText(url: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, method: "GET" }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

export async function startPebble(options: PebbleOptions): Promise<Pebble> {
  await requireBinary("pebble", "pebble");
  await requireBinary("pebble-challtestsrv", "pebble");
  await requireBinary("openssl", "openssl");
  const dir = options.dir;
  await mkdir(dir, { recursive: true });
  const listenAddress = options.listenAddress ?? "127.0.0.1";
  const listener = await makeListenerCertificate(dir, listenAddress);
  const [acmePort, managementPort, dnsPort, dnsManagementPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const processes: Started[] = [];
  const stop = () => stopAll(processes);
  try {
    // Only an A answer: with the default AAAA (::1) the validator may dial an address nginx does not listen on.
    processes.push(
      startProcess(
        "pebble-challtestsrv",
        "pebble-challtestsrv",
        [
          "-dns01",
          `127.0.0.1:${dnsPort}`,
          "-defaultIPv4",
          options.resolveTo ?? "127.0.0.1",
          "-defaultIPv6",
          "",
          "-http01",
          "",
          "-https01",
          "",
          "-tlsalpn01",
          "",
          "-management",
          `127.0.0.1:${dnsManagementPort}`,
        ],
        { logFile: join(dir, "challtestsrv.log") },
      ),
    );
    const configFile = join(dir, "pebble-config.json");
    await writeFile(
      configFile,
      JSON.stringify({
        pebble: {
          listenAddress: `${listenAddress}:${acmePort}`,
          managementListenAddress: `127.0.0.1:${managementPort}`,
          certificate: listener.certFile,
          privateKey: listener.keyFile,
          httpPort: options.httpPort,
          // TLS-ALPN-01 is never offered by certbot --webroot; a port nobody listens on keeps it inert.
          tlsPort: await freePort(),
          ocspResponderURL: "",
          externalAccountBindingRequired: false,
        },
      }),
    );
    await waitForPort(dnsManagementPort);
    processes.push(
      startProcess("pebble", "pebble", ["-config", configFile, "-dnsserver", `127.0.0.1:${dnsPort}`], {
        logFile: join(dir, "pebble.log"),
        // No artificial validation delay, and every authorization validated afresh (renewal must hit nginx).
        env: { ...process.env, PEBBLE_VA_NOSLEEP: "1", PEBBLE_AUTHZREUSE: "0", PEBBLE_WFE_NONCEREJECT: "0" },
      }),
    );
    await waitForPort(acmePort, listenAddress);
    await waitForPort(managementPort);
    const listenerCa = await readFile(listener.caFile, "utf8");
    let issuerRootPem = "";
    for (let attempt = 0; attempt < 50 && !issuerRootPem; attempt++) {
      const root = await httpsGetText(`https://127.0.0.1:${managementPort}/roots/0`, listenerCa).catch(
        () => undefined,
      );
      if (root?.status === 200 && root.body.includes("BEGIN CERTIFICATE")) issuerRootPem = root.body;
      else await sleep(100);
    }
    if (!issuerRootPem) throw new Error("pebble: its management endpoint never returned the issuing root");
    const issuerRootFile = join(dir, "pebble-root.pem");
    await writeFile(issuerRootFile, issuerRootPem);
    return {
      directoryUrl: `https://${listenAddress}:${acmePort}/dir`,
      listenerCaFile: listener.caFile,
      issuerRootPem,
      issuerRootFile,
      processes,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
