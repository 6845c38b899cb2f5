import type { AuthenticationCreds, AuthenticationState, SignalDataSet, SignalDataTypeMap } from "baileys";
import type { Sealer } from "../../crypto/sealer.js";
import { sessionKeyAssociatedData } from "../../numbers/sealing.js";
import type { NumbersStore } from "../../store/numbers.js";
import type { BaileysModule } from "./baileys.js";

// Baileys' authentication state (its credentials and signal keys) kept only in the store, each value sealed with
// AES-GCM under a key derived from API_SECRET, bound to the number and the key's name by the associated data.
// Serialised with Baileys' own BufferJSON, as its file-based store does, so what comes back is what went in;
// nothing is ever written to a file. Baileys asks for key writes in batches: each batch is one transaction.

export const CREDS_KEY = "creds";

export interface SealedAuthState {
  state: AuthenticationState;
  /** Stores the current credentials (after Baileys' `creds.update` merged into them). */
  saveCreds(): Promise<void>;
  /** True when no credentials were stored: a new link. */
  fresh: boolean;
}

export async function sealedAuthState(
  baileys: Pick<BaileysModule, "BufferJSON" | "initAuthCreds" | "proto">,
  store: NumbersStore,
  sealer: Sealer,
  numberId: string,
): Promise<SealedAuthState> {
  const seal = (key: string, value: unknown) =>
    sealer.seal(JSON.stringify(value, baileys.BufferJSON.replacer), sessionKeyAssociatedData(numberId, key));
  const open = (key: string, sealed: Buffer): unknown =>
    JSON.parse(sealer.open(sealed, sessionKeyAssociatedData(numberId, key)), baileys.BufferJSON.reviver);

  const stored = (await store.readSessionKeys(numberId, [CREDS_KEY])).get(CREDS_KEY);
  const creds = stored ? (open(CREDS_KEY, stored) as AuthenticationCreds) : baileys.initAuthCreds();

  const state: AuthenticationState = {
    creds,
    keys: {
      async get<T extends keyof SignalDataTypeMap>(type: T, ids: string[]) {
        const names = ids.map((id) => `${type}:${id}`);
        const found = await store.readSessionKeys(numberId, names);
        const result: { [id: string]: SignalDataTypeMap[T] } = {};
        ids.forEach((id, i) => {
          const name = names[i] as string;
          const sealed = found.get(name);
          if (!sealed) return;
          let value = open(name, sealed);
          if (type === "app-state-sync-key" && value) {
            value = baileys.proto.Message.AppStateSyncKeyData.fromObject(value as object);
          }
          result[id] = value as SignalDataTypeMap[T];
        });
        return result;
      },
      async set(data: SignalDataSet) {
        const entries: Array<readonly [string, Buffer | null]> = [];
        for (const [type, values] of Object.entries(data)) {
          for (const [id, value] of Object.entries(values ?? {})) {
            const name = `${type}:${id}`;
            entries.push([name, value ? seal(name, value) : null]);
          }
        }
        if (entries.length > 0) await store.writeSessionKeys(numberId, entries);
      },
    },
  };
  return {
    state,
    fresh: stored === undefined,
    saveCreds: () => store.writeSessionKeys(numberId, [[CREDS_KEY, seal(CREDS_KEY, state.creds)]]),
  };
}
