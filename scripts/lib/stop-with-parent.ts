// Preloaded (`node --import tsx --import ./scripts/lib/stop-with-parent.ts …`) by the long-running npm scripts
// (`npm run gateway`, `npm run local`), so that whatever ends npm ends them too, through their own SIGTERM
// handler, which stops everything they started.
//
// Why it is needed (npm 11, Debian's dash): npm runs a script as `sh -c '<script>'` and forwards only SIGINT and
// SIGTERM, to that shell, which dies without passing them on; on SIGHUP npm itself just dies. Either way the
// script's process was left running, orphaned, with its children and ports. The scripts therefore `exec` node
// (npm's signals reach node directly) and this module covers the rest:
// - SIGHUP (a closed terminal, or npm hung up) stops the process like SIGTERM, instead of killing it outright
//   and leaving its children behind;
// - when the parent (npm) is gone, e.g. killed by SIGHUP or SIGKILL, the process is reparented and notices it
//   here within a poll interval, then stops itself with SIGTERM.

const POLL_MS = 200;

const parent = process.ppid;
let raised = false;

function stop(): void {
  if (raised) return;
  raised = true;
  process.kill(process.pid, "SIGTERM");
}

process.on("SIGHUP", stop);
setInterval(() => {
  if (process.ppid !== parent) stop();
}, POLL_MS).unref();
