import { createHash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";

// A download passed through as it arrives, checked on the way: never longer than `maxBytes`, exactly
// `expectedSize` bytes when Meta named a size, and the sha256 Meta named. The last chunk is held back until the
// end is checked, so a client never receives a whole body that failed a check: the stream errors instead (the
// response is cut off, which a client sees against its Content-Length).

export class CheckFailed extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = "CheckFailed";
  }
}

/** Meta writes sha256 as hex in some answers and base64 in others; anything else is not checked. */
function sameDigest(digest: Buffer, expected: string): boolean | undefined {
  if (/^[0-9a-fA-F]{64}$/.test(expected)) return digest.toString("hex") === expected.toLowerCase();
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(expected))
    return (
      digest.toString("base64url") === expected.replace(/=$/, "").replace(/\+/g, "-").replace(/\//g, "_")
    );
  return undefined;
}

export function checkedDownload(options: {
  maxBytes: number;
  expectedSize?: number | undefined;
  expectedSha256?: string | undefined;
}): Transform {
  const hash = createHash("sha256");
  let size = 0;
  let pending: Buffer | undefined;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      size += chunk.length;
      if (size > options.maxBytes || (options.expectedSize !== undefined && size > options.expectedSize)) {
        callback(new CheckFailed("the download is longer than announced or allowed"));
        return;
      }
      hash.update(chunk);
      const previous = pending;
      pending = chunk;
      callback(null, previous);
    },
    flush(callback: TransformCallback) {
      if (options.expectedSize !== undefined && size !== options.expectedSize) {
        callback(new CheckFailed("the download is shorter than announced"));
        return;
      }
      if (options.expectedSha256 && sameDigest(hash.digest(), options.expectedSha256) === false) {
        callback(new CheckFailed("the download's sha256 differs from Meta's"));
        return;
      }
      callback(null, pending);
    },
  });
}
