import { execFile } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { requireBinary } from "../../lib/processes.js";

const run = promisify(execFile);

export interface TestCertificates {
  caCert: string;
  cert: string;
  key: string;
}

/** A throwaway CA and a server certificate it signed for `domain` (30 days), made with openssl. */
export async function makeTestCertificates(dir: string, domain: string): Promise<TestCertificates> {
  await requireBinary("openssl", "openssl");
  await mkdir(dir, { recursive: true });
  const p = (name: string) => join(dir, name);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  await run("openssl", [
    "req",
    "-x509",
    ...ec,
    "-days",
    "30",
    "-subj",
    "/CN=wagate test CA",
    "-keyout",
    p("ca.key"),
    "-out",
    p("ca.pem"),
  ]);
  await run("openssl", [
    "req",
    ...ec,
    "-subj",
    `/CN=${domain}`,
    "-keyout",
    p("server.key"),
    "-out",
    p("server.csr"),
  ]);
  await run("bash", [
    "-c",
    `printf 'subjectAltName=DNS:${domain}\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ${p("ext.cnf")}`,
  ]);
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    p("server.csr"),
    "-CA",
    p("ca.pem"),
    "-CAkey",
    p("ca.key"),
    "-CAcreateserial",
    "-days",
    "30",
    "-extfile",
    p("ext.cnf"),
    "-out",
    p("server.pem"),
  ]);
  return { caCert: p("ca.pem"), cert: p("server.pem"), key: p("server.key") };
}
