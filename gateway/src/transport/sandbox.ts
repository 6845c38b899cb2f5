import { closeSync, mkdirSync, openSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import type { OutgoingMessage } from "../messages.js";
import type { SendContext, SendOutcome, Transport } from "./transport.js";

/**
 * Appends every outgoing message as one JSON line, so a person or a test can read what was "sent" (including
 * an OTP). The append is synchronous: it is on disk (in the page cache) before the outbox records "sent".
 */
export function createSandboxTransport(outboxPath: string): Transport {
  mkdirSync(dirname(outboxPath), { recursive: true });
  // Opened once in append mode: each line is one write(2), atomic with respect to other appenders.
  const fd = openSync(outboxPath, "a", 0o600);
  return {
    name: "sandbox",
    async send(message: OutgoingMessage, context: SendContext): Promise<SendOutcome> {
      const providerMessageId = `sandbox.${context.messageId}`;
      const line = {
        id: providerMessageId,
        messageId: context.messageId,
        at: new Date().toISOString(),
        ...message,
      };
      try {
        writeSync(fd, `${JSON.stringify(line)}\n`);
      } catch (error) {
        return {
          kind: "retryable",
          code: "sandbox_io",
          message: (error as NodeJS.ErrnoException).code ?? "io",
        };
      }
      return { kind: "accepted", providerMessageId };
    },
    async close() {
      closeSync(fd);
    },
  };
}
