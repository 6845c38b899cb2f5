import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BufferJSON, initAuthCreds, proto } from "baileys";
import { afterAll, describe, expect, it } from "vitest";
import { createSealer } from "../src/crypto/sealer.js";
import { numberCredentialAssociatedData, sealedOwnerAssociatedData } from "../src/numbers/sealing.js";
import { openSqliteStore } from "../src/store/sqlite.js";
import { sealedAuthState } from "../src/transport/web/auth-state.js";

// The sealed auth state, round-tripped through Baileys' own helpers (initAuthCreds, BufferJSON, the proto class
// of app-state keys), bound to its number and key, and re-sealed by an API_SECRET rotation.

const dir = mkdtempSync(join(tmpdir(), "wagate-auth-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const baileys = { BufferJSON, initAuthCreds, proto };
const asJson = (value: unknown) => JSON.stringify(value, BufferJSON.replacer);

async function storeWithNumbers(name: string) {
  const store = openSqliteStore(join(dir, `${name}.db`));
  const now = Date.now();
  for (const id of ["0190a0b0-0000-7000-8000-00000000000a", "0190a0b0-0000-7000-8000-00000000000b"]) {
    await store.numbers.createNumber({
      id,
      name: id.slice(-2),
      transport: "web",
      status: "unlinked",
      createdAt: now,
    });
  }
  return store;
}
const A = "0190a0b0-0000-7000-8000-00000000000a";
const B = "0190a0b0-0000-7000-8000-00000000000b";

describe("the sealed auth state", () => {
  it("gives back Baileys' credentials and keys exactly, app-state keys as Baileys' proto objects", async () => {
    const store = await storeWithNumbers("roundtrip");
    const sealer = createSealer(randomBytes(32).toString("hex"));
    try {
      const first = await sealedAuthState(baileys, store.numbers, sealer, A);
      expect(first.fresh).toBe(true);
      const original = asJson(first.state.creds);
      await first.saveCreds();
      const preKey = { public: randomBytes(32), private: randomBytes(32) };
      const appStateKey = {
        keyData: randomBytes(32),
        fingerprint: { rawId: 7, currentIndex: 1 },
        timestamp: 1733100000,
      };
      await first.state.keys.set({
        "pre-key": { "1": preKey, "2": preKey },
        session: { "14155550123.0": Buffer.from([1, 2, 3]) },
        "app-state-sync-key": { AAAAAQ: appStateKey },
      });
      await first.state.keys.set({ "pre-key": { "2": null } });

      const again = await sealedAuthState(baileys, store.numbers, sealer, A);
      expect(again.fresh).toBe(false);
      expect(asJson(again.state.creds)).toBe(original);
      const keys = await again.state.keys.get("pre-key", ["1", "2", "3"]);
      expect(Object.keys(keys)).toEqual(["1"]);
      expect(Buffer.from(keys["1"]?.private ?? [])).toEqual(preKey.private);
      const sessions = await again.state.keys.get("session", ["14155550123.0"]);
      expect(Buffer.from(sessions["14155550123.0"] ?? [])).toEqual(Buffer.from([1, 2, 3]));
      const appState = (await again.state.keys.get("app-state-sync-key", ["AAAAAQ"])).AAAAAQ;
      expect(appState).toBeInstanceOf(proto.Message.AppStateSyncKeyData);
      expect(Buffer.from(appState?.keyData ?? [])).toEqual(appStateKey.keyData);
    } finally {
      await store.close();
    }
  });

  it("binds each value to its number and key: moved elsewhere it does not open", async () => {
    const store = await storeWithNumbers("bound");
    const sealer = createSealer(randomBytes(32).toString("hex"));
    try {
      const a = await sealedAuthState(baileys, store.numbers, sealer, A);
      await a.saveCreds();
      const sealed = (await store.numbers.readSessionKeys(A, ["creds"])).get("creds") as Buffer;
      await store.numbers.writeSessionKeys(B, [["creds", sealed]]);
      await expect(sealedAuthState(baileys, store.numbers, sealer, B)).rejects.toThrow();
      await store.numbers.writeSessionKeys(A, [["pre-key:1", sealed]]);
      await expect(a.state.keys.get("pre-key", ["1"])).rejects.toThrow();
    } finally {
      await store.close();
    }
  });

  it("is re-sealed by an API_SECRET rotation with the numbers' access tokens, and opens under the new secret alone", async () => {
    const store = await storeWithNumbers("rotation");
    const oldSecret = randomBytes(32).toString("hex");
    const newSecret = randomBytes(32).toString("hex");
    const before = createSealer(oldSecret);
    try {
      const state = await sealedAuthState(baileys, store.numbers, before, A);
      await state.saveCreds();
      await state.state.keys.set({
        "pre-key": { "1": { public: randomBytes(32), private: randomBytes(32) } },
      });
      const creds = asJson(state.state.creds);
      const token = "EAAG-rotation-token-0123456789";
      await store.numbers.createNumber({
        id: "0190a0b0-0000-7000-8000-00000000000c",
        name: "cloud",
        transport: "cloud",
        status: "active",
        phoneNumberId: "123",
        credential: before.seal(
          token,
          numberCredentialAssociatedData("0190a0b0-0000-7000-8000-00000000000c"),
        ),
        createdAt: Date.now(),
      });

      const rotating = createSealer(newSecret, oldSecret);
      const counts = await store.resealSecrets((owner, sealed) =>
        rotating.reseal(sealed, sealedOwnerAssociatedData(owner)),
      );
      expect(counts).toEqual({ resealed: 3, unopenable: 0 });

      const after = createSealer(newSecret);
      const reopened = await sealedAuthState(baileys, store.numbers, after, A);
      expect(asJson(reopened.state.creds)).toBe(creds);
      expect(Object.keys(await reopened.state.keys.get("pre-key", ["1"]))).toEqual(["1"]);
      const cloud = await store.numbers.getNumber("0190a0b0-0000-7000-8000-00000000000c");
      expect(after.open(cloud?.credential as Buffer, numberCredentialAssociatedData(cloud?.id ?? ""))).toBe(
        token,
      );
      await expect(sealedAuthState(baileys, store.numbers, before, A)).rejects.toThrow();
    } finally {
      await store.close();
    }
  });
});
