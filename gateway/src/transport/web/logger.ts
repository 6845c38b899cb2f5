import type { FastifyBaseLogger } from "fastify";

// Baileys logs objects that hold key material (credentials, pre-keys, session records) at debug and trace. This
// logger drops every object Baileys hands over and keeps only the message text of warnings and errors, so nothing
// of a session can reach the gateway's logs whatever level it runs at.

/** Baileys' logger interface (its `ILogger`, which the package does not export by name). */
export interface ILogger {
  level: string;
  child(obj: Record<string, unknown>): ILogger;
  trace(obj: unknown, msg?: string): void;
  debug(obj: unknown, msg?: string): void;
  info(obj: unknown, msg?: string): void;
  warn(obj: unknown, msg?: string): void;
  error(obj: unknown, msg?: string): void;
}

const NOTHING = () => {};

export function quietBaileysLogger(log: FastifyBaseLogger, numberId: string): ILogger {
  const forward =
    (level: "warn" | "error") =>
    (obj: unknown, msg?: string): void => {
      const text = typeof obj === "string" ? obj : msg;
      // A message that is not a plain short string is dropped too: it could be a serialised object.
      if (typeof text !== "string" || text.length > 200 || /[{}[\]]/.test(text)) return;
      log[level]({ numberId, component: "baileys" }, `web: ${text}`);
    };
  const logger: ILogger = {
    level: "warn",
    child: () => logger,
    trace: NOTHING,
    debug: NOTHING,
    info: NOTHING,
    warn: forward("warn"),
    error: forward("error"),
  };
  return logger;
}
