import { request } from "node:https";
import { connect } from "node:tls";

// One HTTPS request to the box, naming the domain in SNI and Host while connecting to the box's address, from a
// chosen local address (the flood comes from a second one).

export interface BoxRequest {
  address: string;
  host: string;
  ca: string;
  path: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  localAddress?: string;
}

export interface BoxResponse {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

export function boxRequest(r: BoxRequest): Promise<BoxResponse> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: r.address,
        port: 443,
        path: r.path,
        method: r.method ?? "GET",
        servername: r.host,
        ca: r.ca,
        localAddress: r.localAddress,
        agent: false,
        timeout: 10_000,
        headers: {
          host: r.host,
          ...r.headers,
          ...(r.body ? { "content-length": Buffer.byteLength(r.body) } : {}),
        },
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          if (body.length < 65_536) body += chunk;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
        res.on("error", reject);
      },
    );
    req.once("timeout", () => req.destroy(new Error("no answer within 10 s")));
    req.once("error", reject);
    req.end(r.body);
  });
}

/** Serial number of the certificate the box's nginx serves for `host` (checked against `ca`). */
export function servedCertificateSerial(r: Pick<BoxRequest, "address" | "host" | "ca">): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: r.address, port: 443, servername: r.host, ca: r.ca }, () => {
      const serial = socket.getPeerCertificate().serialNumber;
      socket.end();
      resolve(serial);
    });
    socket.setTimeout(10_000, () => socket.destroy(new Error("no TLS handshake within 10 s")));
    socket.once("error", reject);
  });
}
