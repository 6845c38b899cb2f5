import { closeSync, mkdirSync, openSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import type { OutgoingMessage } from "../messages.js";
import type { ReadReceipt, SendContext, SendOutcome, Transport } from "./transport.js";

/**
 * Appends every outgoing message as one JSON line, so a person or a test can read what was "sent" (including
 * an OTP). The sends of one turn of the event loop are appended together, in one write(2) to a file opened in
 * append mode (whole lines, atomic with respect to other appenders), and each send resolves only after that
 * write returned: a line is in the file before the outbox records "sent".
 */
export function createSandboxTransport(outboxPath: string): Transport {
  mkdirSync(dirname(outboxPath), { recursive: true });
  const fd = openSync(outboxPath, "a", 0o600);
  let pending: Array<{ line: string; providerMessageId: string; resolve: (outcome: SendOutcome) => void }> =
    [];

  function flush(): void {
    const batch = pending;
    pending = [];
    let failure: string | undefined;
    try {
      writeSync(fd, batch.map((p) => p.line).join(""));
    } catch (error) {
      failure = (error as NodeJS.ErrnoException).code ?? "io";
    }
    for (const { providerMessageId, resolve } of batch) {
      resolve(
        failure === undefined
          ? { kind: "accepted", providerMessageId }
          : { kind: "retryable", code: "sandbox_io", message: failure },
      );
    }
  }

  function append(line: string, providerMessageId: string): Promise<SendOutcome> {
    return new Promise((resolve) => {
      pending.push({ line, providerMessageId, resolve });
      if (pending.length === 1) setImmediate(flush);
    });
  }

  return {
    name: "sandbox",
    send(message: OutgoingMessage, context: SendContext): Promise<SendOutcome> {
      const providerMessageId = `sandbox.${context.messageId}`;
      const line = `${JSON.stringify({
        id: providerMessageId,
        messageId: context.messageId,
        at: new Date().toISOString(),
        ...(context.numberId ? { from: context.numberId } : {}),
        ...message,
      })}\n`;
      return append(line, providerMessageId);
    },
    markRead(receipt: ReadReceipt): Promise<SendOutcome> {
      const line = `${JSON.stringify({
        status: "read",
        message_id: receipt.messageId,
        at: new Date().toISOString(),
        ...(receipt.numberId ? { from: receipt.numberId } : {}),
      })}\n`;
      return append(line, receipt.messageId);
    },
    async close() {
      if (pending.length > 0) flush();
      closeSync(fd);
    },
  };
}
