import { posix } from "node:path";

// Every path and port of the edge that differs between the VM and a run on this machine (local stack, tests,
// benchmarks). The renderers take an EdgeLayout and nothing else about the filesystem, so the VM and the tests run
// the same configuration with different roots.

/** certbot's `--cert-name`: the certificate lives in `<letsencryptDir>/live/wagate/` whatever the domain is. */
export const CERT_NAME = "wagate";

export interface EdgeLayout {
  /** nginx `-p` prefix. */
  readonly prefix: string;
  /** Where `nginx.conf` and every other rendered file live (the keys of `renderNginx` are relative to it). */
  readonly confDir: string;
  readonly pidFile: string;
  /** Parent of nginx's temp dirs (client bodies, proxy buffers) and ModSecurity's SecTmpDir/SecDataDir. */
  readonly tempDir: string;
  /** access.json, error.log and modsec_audit.log. */
  readonly logDir: string;
  /** certbot's `--config-dir`; the certificate is `<letsencryptDir>/live/<CERT_NAME>/fullchain.pem`. */
  readonly letsencryptDir: string;
  readonly certificate: string;
  readonly certificateKey: string;
  /** certbot `--webroot -w` dir: nginx serves `<acmeWebroot>/.well-known/acme-challenge/`. */
  readonly acmeWebroot: string;
  /** The rendered ModSecurity/CRS files; must lie inside confDir. */
  readonly modsecurityDir: string;
  /** OWASP CRS rules as Debian ships them (`modsecurity-crs`). */
  readonly crsDir: string;
  /** Dynamic modules (`libnginx-mod-http-modsecurity`). */
  readonly modulesDir: string;
  /** Address nginx binds (undefined: every IPv4 and IPv6 address). */
  readonly listenHost: string | undefined;
  readonly httpPort: number;
  readonly httpsPort: number;
  /** The gateway, on loopback. */
  readonly upstream: { readonly host: string; readonly port: number };
  /** Emit `user <name>;` (only when nginx's master runs as root). */
  readonly user: string | undefined;
}

/** The VM: Debian's nginx paths, ports 80/443, the gateway container on 127.0.0.1:3000. */
export function vmLayout(): EdgeLayout {
  return {
    prefix: "/etc/nginx",
    confDir: "/etc/nginx",
    pidFile: "/run/nginx.pid",
    tempDir: "/var/lib/nginx",
    logDir: "/var/log/nginx",
    letsencryptDir: "/etc/letsencrypt",
    certificate: `/etc/letsencrypt/live/${CERT_NAME}/fullchain.pem`,
    certificateKey: `/etc/letsencrypt/live/${CERT_NAME}/privkey.pem`,
    acmeWebroot: "/var/www/acme",
    modsecurityDir: "/etc/nginx/modsecurity.d",
    crsDir: "/usr/share/modsecurity-crs",
    modulesDir: "/usr/lib/nginx/modules",
    listenHost: undefined,
    httpPort: 80,
    httpsPort: 443,
    upstream: { host: "127.0.0.1", port: 3000 },
    user: "www-data",
  };
}

export interface LocalPorts {
  readonly http: number;
  readonly https: number;
  /** The gateway (or a test's upstream) on 127.0.0.1. */
  readonly upstream: number;
}

/** Everything under `rootDir`, unprivileged ports on 127.0.0.1, no `user` directive. */
export function localLayout(rootDir: string, ports: LocalPorts): EdgeLayout {
  const root = posix.resolve(rootDir);
  const letsencryptDir = posix.join(root, "letsencrypt");
  return {
    prefix: root,
    confDir: posix.join(root, "conf"),
    pidFile: posix.join(root, "nginx.pid"),
    tempDir: posix.join(root, "tmp"),
    logDir: posix.join(root, "logs"),
    letsencryptDir,
    certificate: posix.join(letsencryptDir, "live", CERT_NAME, "fullchain.pem"),
    certificateKey: posix.join(letsencryptDir, "live", CERT_NAME, "privkey.pem"),
    acmeWebroot: posix.join(root, "acme"),
    modsecurityDir: posix.join(root, "conf", "modsecurity.d"),
    crsDir: "/usr/share/modsecurity-crs",
    modulesDir: "/usr/lib/nginx/modules",
    listenHost: "127.0.0.1",
    httpPort: ports.http,
    httpsPort: ports.https,
    upstream: { host: "127.0.0.1", port: ports.upstream },
    user: undefined,
  };
}

/** Directories nginx and ModSecurity need to exist before start (certbot creates its own). */
export function layoutDirectories(layout: EdgeLayout): string[] {
  return [
    layout.confDir,
    layout.modsecurityDir,
    layout.logDir,
    layout.tempDir,
    posix.join(layout.tempDir, "modsecurity"),
    posix.join(layout.acmeWebroot, ".well-known", "acme-challenge"),
  ];
}
