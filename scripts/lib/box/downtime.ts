// Watches a service from outside while something happens to it: one probe after the other, and the longest
// stretch between the last answer before a failure and the first answer after it. That is the downtime a
// client saw, whatever the cause (a box powering off, a new one being provisioned).

export interface DowntimeWatch {
  /** Stops probing; resolves with the longest outage in seconds (0 if every probe answered). */
  stop(): Promise<{ downtimeSeconds: number; probes: number; failures: number }>;
  /** Resolves at the first good probe after at least one failure. */
  recovered(timeoutMs: number): Promise<void>;
}

export function watchDowntime(probe: () => Promise<boolean>, pauseMs = 250): DowntimeWatch {
  let running = true;
  let lastOk = performance.now();
  let failing = false;
  let longest = 0;
  let probes = 0;
  let failures = 0;
  let onRecovered: (() => void) | undefined;
  let wasDown = false;
  const loop = (async () => {
    while (running) {
      const ok = await probe().catch(() => false);
      probes++;
      const now = performance.now();
      if (ok) {
        if (failing) longest = Math.max(longest, (now - lastOk) / 1000);
        if (failing && onRecovered) onRecovered();
        failing = false;
        lastOk = now;
      } else {
        failures++;
        failing = true;
        wasDown = true;
      }
      await new Promise((r) => setTimeout(r, pauseMs));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      if (failing) longest = Math.max(longest, (performance.now() - lastOk) / 1000);
      return { downtimeSeconds: longest, probes, failures };
    },
    recovered(timeoutMs) {
      if (wasDown && !failing) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no answer within ${timeoutMs / 1000} s`)),
          timeoutMs,
        );
        onRecovered = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    },
  };
}
