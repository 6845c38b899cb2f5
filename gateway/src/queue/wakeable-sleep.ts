/**
 * The pause of a worker loop: `sleep(ms)` ends after `ms` or at the next `wake()`, whichever comes first. A
 * `wake()` while nobody sleeps does nothing (the loop is running and will look for work anyway).
 */
export class WakeableSleep {
  private wakeSleeper: (() => void) | undefined;

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeSleeper = () => {
        this.wakeSleeper = undefined;
        done();
      };
    });
  }

  wake(): void {
    this.wakeSleeper?.();
  }
}
