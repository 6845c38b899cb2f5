import { execFile } from "node:child_process";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { promisify } from "node:util";
import {
  type CertbotDirs,
  type CertbotInput,
  certbotDirArgs,
  certbotIssueArgs,
  certbotLivePaths,
  certbotRenewArgs,
  type DeployHookInput,
  deployHookPath,
  renderDeployHook,
} from "../../infra/render/certbot.js";
import { requireBinary } from "./processes.js";

// Runs the certbot commands the renderers describe against a local ACME server (Pebble), with every piece of
// certbot state under one directory, so the local stack and the tests never touch /etc/letsencrypt.

const execFileAsync = promisify(execFile);

export interface LocalCertbot {
  dirs: CertbotDirs;
  /** CA file trusted for the ACME server's own HTTPS listener (Pebble's throwaway CA). */
  acmeListenerCaFile: string;
}

async function runCertbot(certbot: LocalCertbot, args: string[]): Promise<string> {
  await requireBinary("certbot", "certbot");
  for (const dir of Object.values(certbot.dirs)) await mkdir(dir, { recursive: true, mode: 0o700 });
  try {
    const { stdout, stderr } = await execFileAsync("certbot", [...args, ...certbotDirArgs(certbot.dirs)], {
      env: { ...process.env, REQUESTS_CA_BUNDLE: certbot.acmeListenerCaFile },
      timeout: 120_000,
    });
    return stdout + stderr;
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    const tail = `${e.stdout ?? ""}${e.stderr ?? ""}`.trim().split("\n").slice(-15).join("\n");
    throw new Error(`certbot ${args[0]} failed:\n${tail || e.message}`);
  }
}

/** Installs the deploy hook (the same script the VM gets) in certbot's renewal-hooks directory. */
export async function installDeployHook(dirs: CertbotDirs, input: DeployHookInput): Promise<string> {
  const path = deployHookPath(dirs);
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFile(path, renderDeployHook(input), { mode: 0o700 });
  await chmod(path, 0o700);
  return path;
}

/** `certbot certonly --webroot`; the caller reloads nginx afterwards (deploy hooks run on renewals only). */
export async function obtainCertificate(
  certbot: LocalCertbot,
  input: CertbotInput,
): Promise<{ fullchain: string; privkey: string }> {
  await runCertbot(certbot, certbotIssueArgs(input));
  return certbotLivePaths(certbot.dirs, input.certName);
}

/** `certbot renew` of one lineage, without certbot's random delay; certbot then runs the deploy hooks. */
export async function renewCertificate(
  certbot: LocalCertbot,
  certName: string,
  force: boolean,
): Promise<string> {
  return runCertbot(certbot, certbotRenewArgs(certName, { force, immediately: true }));
}
