import { expect } from "vitest";
import type { FakeSockets, FakeWaSocket } from "./fake-wa-socket.js";
import { eventually, type TestGateway } from "./gateway.js";

/**
 * Registers a WhatsApp Web number and links it as an admin would: the QR is shown on the first fake socket, the
 * phone pairs, and the socket Baileys opens next goes `open`. Resolves once the number reads `connected`, with
 * that socket. `first` is the index of the link attempt's socket among those the factory opened so far.
 */
export async function linkWebNumber(
  gw: TestGateway,
  fake: FakeSockets,
  admin: string,
  phone: string,
  first = 0,
): Promise<{ numberId: string; socket: FakeWaSocket }> {
  const created = await gw.request("POST", "/v1/numbers", {
    token: admin,
    body: { name: "shop", transport: "web" },
  });
  const numberId = created.json.id as string;
  const answer = gw.request("POST", `/v1/numbers/${numberId}/link`, { token: admin, body: { method: "qr" } });
  const linking = await fake.opened(first);
  linking.qr();
  expect((await answer).status).toBe(202);
  linking.paired(phone);
  const socket = await fake.opened(first + 1);
  socket.open(phone);
  await eventually(async () =>
    (await gw.request("GET", `/v1/numbers/${numberId}`, { token: admin })).json.status === "connected"
      ? true
      : undefined,
  );
  return { numberId, socket };
}
