import { parseAccessLine } from "./access-log.js";
import { IpTally, type RankedIp, type RankKey, rank, type Thresholds, type Window } from "./ip-ranking.js";
import { forEachLine, openLog } from "./log-files.js";

// The whole analysis behind `npm run suspicious-ips`: stream every file once, tally per client, rank.

export interface AnalysisOptions {
  files: readonly string[];
  window: Window;
  sortBy: RankKey;
  thresholds: Thresholds;
}

export interface FileProblem {
  file: string;
  message: string;
}

export interface Analysis {
  files: string[];
  lines: number;
  /** Lines read as an access log entry (inside or outside the window). */
  entries: number;
  /** Lines that are neither the JSON nor the combined format, or over the length limit: counted, skipped. */
  malformed: number;
  outsideWindow: number;
  /** Files that could not be read to the end (a truncated rotation, say); what was read still counts. */
  problems: FileProblem[];
  ranked: RankedIp[];
}

export async function analyzeLogs(options: AnalysisOptions): Promise<Analysis> {
  const tally = new IpTally(options.window);
  let lines = 0;
  let entries = 0;
  let malformed = 0;
  const problems: FileProblem[] = [];
  const sink = {
    line(text: string) {
      lines++;
      const entry = parseAccessLine(text);
      if (entry) {
        entries++;
        tally.add(entry);
      } else {
        malformed++;
      }
    },
    oversized() {
      lines++;
      malformed++;
    },
  };
  for (const file of options.files) {
    try {
      await forEachLine(await openLog(file), sink);
    } catch (error) {
      problems.push({ file, message: (error as Error).message });
    }
  }
  return {
    files: [...options.files],
    lines,
    entries,
    malformed,
    outsideWindow: tally.outsideWindow,
    problems,
    ranked: rank(tally.byIp.values(), options.sortBy, options.thresholds),
  };
}
