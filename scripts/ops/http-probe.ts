import { request as httpRequest } from "node:http";
import { Agent, request as httpsRequest } from "node:https";
import { isIP } from "node:net";
import { type SecureVersion, connect as tlsConnect } from "node:tls";

// The two ways smoke talks to an edge: an HTTP(S) request, and a bare TLS handshake pinned to one protocol
// version. Both connect to an explicit address (curl's --resolve) while naming the real host in SNI, in the Host
// header and in the certificate check, so a stack can be tested before its DNS points at it.

export interface Target {
  /** Host name for SNI, Host and the certificate check. */
  host: string;
  /** Where to connect (an IP address), default `host`. */
  address: string;
  port: number;
  /** Extra trusted CA certificates (PEM); the system's are used too only when absent. */
  ca?: string;
  timeoutMs: number;
}

export interface ProbeResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

const MAX_BODY = 64 * 1024;

/** SNI carries host names only: for a URL with an IP address, none is sent (and the certificate names the IP). */
function sni(target: Target): string | undefined {
  return isIP(target.host) === 0 ? target.host : undefined;
}

export function probe(
  scheme: "http" | "https",
  target: Target,
  path: string,
  options: { method?: string; headers?: Record<string, string>; agent?: Agent } = {},
): Promise<ProbeResponse> {
  const defaultPort = scheme === "https" ? 443 : 80;
  const hostHeader = target.port === defaultPort ? target.host : `${target.host}:${target.port}`;
  return new Promise((resolve, reject) => {
    const common = {
      host: target.address,
      port: target.port,
      path,
      method: options.method ?? "GET",
      headers: { host: hostHeader, "user-agent": "wagate-smoke", ...options.headers },
      timeout: target.timeoutMs,
    };
    const req =
      scheme === "https"
        ? httpsRequest({
            ...common,
            servername: sni(target),
            ca: target.ca,
            agent: options.agent ?? false,
            rejectUnauthorized: true,
          })
        : httpRequest({ ...common, agent: false });
    req.once("timeout", () => req.destroy(new Error(`no answer within ${target.timeoutMs} ms`)));
    req.once("error", reject);
    req.once("response", (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        if (body.length < MAX_BODY) body += chunk;
      });
      res.once("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.once("error", reject);
    });
    req.end();
  });
}

export type HandshakeOutcome =
  | { kind: "accepted"; protocol: string; daysLeft: number; authorized: boolean; authorizationError?: string }
  | { kind: "refused"; reason: string }
  /** Nothing to say about the server: no TCP connection, or this client cannot offer the version. */
  | { kind: "untestable"; reason: string };

/** Codes with which a server's refusal of a protocol version shows up in Node. */
const REFUSAL_CODES = new Set([
  "ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION",
  "ERR_SSL_UNSUPPORTED_PROTOCOL",
  "ERR_SSL_WRONG_VERSION_NUMBER",
  "ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE",
  "ERR_SSL_TLSV1_ALERT_INSUFFICIENT_SECURITY",
  "ECONNRESET",
]);

/**
 * A handshake offering only `version`. For TLS 1.0/1.1 the client lowers OpenSSL's security level so that it
 * can offer them at all: the point is to see whether the server accepts them.
 */
export function handshake(target: Target, version: SecureVersion): Promise<HandshakeOutcome> {
  const legacy = version === "TLSv1" || version === "TLSv1.1";
  return new Promise((resolve) => {
    const socket = tlsConnect({
      host: target.address,
      port: target.port,
      servername: sni(target),
      minVersion: version,
      maxVersion: version,
      ca: target.ca,
      ciphers: legacy ? "DEFAULT@SECLEVEL=0" : undefined,
      rejectUnauthorized: false,
      ALPNProtocols: ["http/1.1"],
    });
    let connected = false;
    socket.once("connect", () => {
      connected = true;
    });
    socket.setTimeout(target.timeoutMs, () =>
      socket.destroy(new Error(`no handshake within ${target.timeoutMs} ms`)),
    );
    socket.once("secureConnect", () => {
      const cert = socket.getPeerCertificate();
      const daysLeft = cert.valid_to ? Math.floor((Date.parse(cert.valid_to) - Date.now()) / 86_400_000) : -1;
      resolve({
        kind: "accepted",
        protocol: socket.getProtocol() ?? "unknown",
        daysLeft,
        authorized: socket.authorized,
        authorizationError: socket.authorizationError ? String(socket.authorizationError) : undefined,
      });
      socket.destroy();
    });
    socket.once("error", (error: NodeJS.ErrnoException) => {
      const code = error.code ?? "";
      if (code === "ERR_SSL_NO_PROTOCOLS_AVAILABLE") {
        resolve({ kind: "untestable", reason: `this client cannot offer ${version}` });
      } else if (!connected) {
        resolve({ kind: "untestable", reason: `could not connect: ${code || error.message}` });
      } else if (REFUSAL_CODES.has(code) || /alert|handshake|protocol|version/i.test(error.message)) {
        resolve({ kind: "refused", reason: code || error.message.split("\n")[0] || "handshake failed" });
      } else {
        resolve({ kind: "untestable", reason: code || error.message });
      }
    });
    socket.once("close", () =>
      resolve({ kind: "refused", reason: "connection closed during the handshake" }),
    );
  });
}

/** A keep-alive agent for the burst of the rate-limit check (fresh connections would measure the handshake). */
export function burstAgent(target: Target, sockets: number): Agent {
  return new Agent({ keepAlive: true, maxSockets: sockets, ca: target.ca, servername: sni(target) });
}
