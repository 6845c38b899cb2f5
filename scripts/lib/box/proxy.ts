import { createServer, request as httpRequest, type IncomingMessage, type Server } from "node:http";
import { connect } from "node:net";

// The box's only way out: a forward proxy on the host's side of the veth that lets through Debian's mirror
// (apt, plain HTTP) and the npm registry (CONNECT, for `npm ci` in the image build), and nothing else. It keeps
// the host's firewall untouched (no NAT) and the box's traffic to what provisioning legitimately fetches.

export const ALLOWED_HTTP_HOSTS: readonly string[] = ["deb.debian.org"];
export const ALLOWED_CONNECT: readonly string[] = ["registry.npmjs.org:443"];

export interface BoxProxy {
  url: string;
  /** Requests refused, as `METHOD host` (a test asserts what was refused). */
  refused: string[];
  close(): Promise<void>;
}

export function isAllowedUrl(raw: string): boolean {
  try {
    const url = new URL(raw);
    return (
      url.protocol === "http:" &&
      (url.port === "" || url.port === "80") &&
      ALLOWED_HTTP_HOSTS.includes(url.hostname)
    );
  } catch {
    return false;
  }
}

export function isAllowedConnect(authority: string): boolean {
  return ALLOWED_CONNECT.includes(authority.toLowerCase());
}

export function startBoxProxy(host: string, port = 0): Promise<BoxProxy> {
  const refused: string[] = [];
  // Tunnels leave the HTTP server's bookkeeping: closeAllConnections() does not see them.
  const tunnels = new Set<import("node:net").Socket>();
  const server: Server = createServer((req, res) => {
    const target = req.url ?? "";
    if (!isAllowedUrl(target)) {
      refused.push(`${req.method} ${target.slice(0, 100)}`);
      res.writeHead(403, { "content-type": "text/plain" }).end("not allowed from the box\n");
      return;
    }
    const upstream = httpRequest(
      target,
      { method: req.method, headers: { ...req.headers, connection: "close" } },
      (answer: IncomingMessage) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", () => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    req.pipe(upstream);
  });
  server.on("connect", (req, socket, head) => {
    const authority = req.url ?? "";
    if (!isAllowedConnect(authority)) {
      refused.push(`CONNECT ${authority.slice(0, 100)}`);
      socket.end("HTTP/1.1 403 Forbidden\r\n\r\n");
      return;
    }
    const [name, portText] = authority.split(":");
    tunnels.add(socket as import("node:net").Socket);
    socket.on("close", () => tunnels.delete(socket as import("node:net").Socket));
    const remote = connect(Number(portText), name ?? "", () => {
      socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      remote.write(head);
      remote.pipe(socket);
      socket.pipe(remote);
    });
    remote.on("error", () => socket.destroy());
    socket.on("error", () => remote.destroy());
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      const address = server.address();
      if (typeof address !== "object" || !address) return reject(new Error("proxy: no address"));
      resolve({
        url: `http://${host}:${address.port}`,
        refused,
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections();
            for (const t of tunnels) t.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
