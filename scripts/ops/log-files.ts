import { createReadStream } from "node:fs";
import { open, readdir, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { Readable } from "node:stream";
import { createGunzip } from "node:zlib";

// Reading rotated nginx logs: plain and gzipped files (told apart by their magic bytes, not their names),
// several files or a glob such as `/var/log/nginx/access.log*`, line by line with bounded memory.

/** Longer lines are counted as malformed and skipped without being buffered whole. */
export const MAX_LINE_BYTES = 64 * 1024;

function globToRegExp(pattern: string): RegExp {
  const escaped = pattern
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/\?/g, ".");
  return new RegExp(`^${escaped}$`);
}

/**
 * Expands `*` and `?` in the last path component (the shape of rotated logs); other arguments are taken as
 * they are. A pattern that matches nothing, or a missing file, is an error naming it.
 */
export async function expandLogPaths(patterns: readonly string[]): Promise<string[]> {
  const files: string[] = [];
  for (const pattern of patterns) {
    if (pattern === STDIN) {
      files.push(STDIN);
      continue;
    }
    const name = basename(pattern);
    if (!/[*?]/.test(name)) {
      const info = await stat(pattern).catch(() => undefined);
      if (!info?.isFile()) throw new Error(`no such log file: ${pattern}`);
      files.push(pattern);
      continue;
    }
    const dir = dirname(pattern);
    if (/[*?]/.test(dir)) throw new Error(`wildcards are only supported in the file name: ${pattern}`);
    const matcher = globToRegExp(name);
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    const matched = entries
      .filter((e) => e.isFile() && matcher.test(e.name))
      .map((e) => join(dir, e.name))
      .sort();
    if (matched.length === 0) throw new Error(`no log file matches ${pattern}`);
    files.push(...matched);
  }
  return [...new Set(files)];
}

async function isGzip(path: string): Promise<boolean> {
  const handle = await open(path, "r");
  try {
    const { bytesRead, buffer } = await handle.read(Buffer.alloc(2), 0, 2, 0);
    return bytesRead === 2 && buffer[0] === 0x1f && buffer[1] === 0x8b;
  } finally {
    await handle.close();
  }
}

/** `-`: the log arrives on stdin, e.g. `ssh admin@host 'sudo cat /var/log/nginx/access.json*' | ...`. */
export const STDIN = "-";

/** A stream that may be gzipped: peeks at its first bytes, then passes everything on, gunzipped if needed. */
async function maybeGunzip(input: Readable): Promise<Readable> {
  const iterator = (input as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const first = await iterator.next();
  if (first.done) return Readable.from([]);
  const head = first.value as Buffer;
  async function* rest(): AsyncGenerator<Buffer> {
    yield head;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield next.value as Buffer;
    }
  }
  const stream = Readable.from(rest(), { objectMode: false });
  return head[0] === 0x1f && head[1] === 0x8b ? stream.pipe(createGunzip()) : stream;
}

export async function openLog(path: string): Promise<Readable> {
  if (path === STDIN) return maybeGunzip(process.stdin);
  const raw = createReadStream(path, { highWaterMark: 1024 * 1024 });
  return (await isGzip(path)) ? raw.pipe(createGunzip()) : raw;
}

export interface LineSink {
  line(text: string): void;
  /** A line longer than MAX_LINE_BYTES, dropped. */
  oversized(): void;
}

/** Feeds every line of a byte stream to `sink`; a trailing line without a newline is included. */
export async function forEachLine(stream: Readable, sink: LineSink): Promise<void> {
  let carry: Buffer | undefined;
  let skipping = false;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      if (nl === -1) break;
      if (skipping) {
        skipping = false;
      } else if (carry) {
        const joined = Buffer.concat([carry, chunk.subarray(start, nl)]);
        carry = undefined;
        if (joined.length > MAX_LINE_BYTES) sink.oversized();
        else emit(joined, 0, joined.length, sink);
      } else if (nl - start > MAX_LINE_BYTES) {
        sink.oversized();
      } else {
        emit(chunk, start, nl, sink);
      }
      start = nl + 1;
    }
    if (start < chunk.length && !skipping) {
      const rest = chunk.subarray(start);
      carry = carry ? Buffer.concat([carry, rest]) : Buffer.from(rest);
      if (carry.length > MAX_LINE_BYTES) {
        carry = undefined;
        skipping = true;
        sink.oversized();
      }
    }
  }
  if (carry && carry.length > 0) emit(carry, 0, carry.length, sink);
}

function emit(buffer: Buffer, start: number, end: number, sink: LineSink): void {
  const stop = end > start && buffer[end - 1] === 13 ? end - 1 : end;
  if (stop > start) sink.line(buffer.toString("utf8", start, stop));
}
