import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
} from "node:fs";
import { join, posix, relative, sep } from "node:path";
import { digestOf, sha256 } from "./provision.js";

// The gateway's build context when the host builds the image itself (no pinned `gatewayImage`): the
// repository's `gateway/` sources and the root package.json + package-lock.json (npm workspaces resolve from
// the root) + tsconfig.json (gateway/tsconfig.build.json extends it; the Dockerfile copies it). Dependencies, build output, tests and local data stay behind: they are rebuilt in the image or
// have no place in it, and copying node_modules over SFTP would take minutes.

export const BUILD_CONTEXT_ROOT_FILES = ["package.json", "package-lock.json", "tsconfig.json"] as const;
export const BUILD_CONTEXT_DIR = "gateway";
const EXCLUDED_DIRS = new Set(["node_modules", "dist", "coverage", ".local", "test", "data"]);
const EXCLUDED_FILE = /(\.log|\.db|\.db-wal|\.db-shm|\.sqlite3?)$/;

/** Context files as sorted POSIX paths relative to the repository root. */
export function listBuildContext(repoRoot: string): string[] {
  const found: string[] = [...BUILD_CONTEXT_ROOT_FILES];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (!EXCLUDED_DIRS.has(entry.name)) walk(path);
      } else if (entry.isFile() && !EXCLUDED_FILE.test(entry.name)) {
        found.push(relative(repoRoot, path).split(sep).join(posix.sep));
      }
    }
  };
  walk(join(repoRoot, BUILD_CONTEXT_DIR));
  return found.sort();
}

/** Digest of the context's paths and contents (bytes, so binary files count too). */
export function buildContextDigest(repoRoot: string, files: readonly string[]): string {
  return digestOf(Object.fromEntries(files.map((f) => [f, sha256(readFileSync(join(repoRoot, f)))])));
}

/**
 * Copies the context into `<stageParent>/src-<digest>` (the directory a `FileArchive` hands to the host) and
 * removes older stages. The name is the content's digest, so the host never mixes two versions, and an existing
 * stage is complete by construction: it is filled under a temporary name and renamed into place, which also keeps
 * two programs staging the same sources at once (parallel tests, two terminals) from tripping over each other.
 */
export function stageBuildContext(
  repoRoot: string,
  files: readonly string[],
  stageParent: string,
  digest: string,
) {
  const name = `src-${digest.slice(0, 16)}`;
  const dir = join(stageParent, name);
  mkdirSync(stageParent, { recursive: true });
  if (!existsSync(dir)) {
    const tmp = mkdtempSync(join(stageParent, `.${name}-`));
    for (const file of files) {
      mkdirSync(join(tmp, posix.dirname(file)), { recursive: true });
      cpSync(join(repoRoot, file), join(tmp, file));
    }
    try {
      renameSync(tmp, dir);
    } catch (error) {
      rmSync(tmp, { recursive: true, force: true });
      if (!existsSync(dir)) throw error;
    }
  }
  for (const entry of readdirSync(stageParent)) {
    if (entry.startsWith("src-") && entry !== name)
      rmSync(join(stageParent, entry), { recursive: true, force: true });
  }
  return { name, dir };
}

/**
 * Lists, hashes and stages the context of `repoRoot` under `<repoRoot>/<stageParent>`, and returns the staged
 * directory relative to the repository root (Pulumi's working directory: the same path on every machine).
 */
export function prepareBuildContext(
  repoRoot: string,
  stageParent: string,
): { localDir: string; digest: string } {
  const files = listBuildContext(repoRoot);
  const digest = buildContextDigest(repoRoot, files);
  const { name } = stageBuildContext(repoRoot, files, join(repoRoot, stageParent), digest);
  return { localDir: posix.join(stageParent, name), digest };
}
