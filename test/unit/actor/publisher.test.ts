/**
 * The publisher rides out a stream's leader election (design note bl): publishes that go
 * unacknowledged are repeated in their original order with the same message ids, so a copy that
 * was stored after all is dropped and nothing is stored twice; if the order cannot be kept, or the
 * stream stays unavailable, it fails and the job recovers from its checkpoint as before.
 */
import { describe, expect, it } from "vitest";
import { keptOrder, PublishFailedError, Publisher } from "../../../runtime/actor/publisher.ts";
import { WriteUnacknowledgedError, type PublishReceipt, type Transport } from "../../../runtime/actor/ports.ts";

/**
 * A stream behind a leader that can be taken away: while `down`, a publish is either lost before
 * it is stored or stored with its acknowledgement lost (`storeWhileDown`), and fails as unacknowledged.
 */
class FlakyStream {
  readonly stored: Array<{ data: string; msgId: string | undefined }> = [];
  private readonly ids = new Map<string, number>();
  down = false;
  storeWhileDown = (_i: number) => false;
  private downCalls = 0;
  other: Error | undefined;

  transport(): Transport {
    return {
      publish: async (_subject: string, data: Uint8Array, _headers?: Readonly<Record<string, string>>, msgId?: string): Promise<PublishReceipt> => {
        await new Promise((r) => setTimeout(r, 1));
        if (this.other !== undefined) throw this.other;
        if (this.down) {
          if (this.storeWhileDown(this.downCalls++)) this.store(data, msgId);
          throw new WriteUnacknowledgedError("publish to s not acknowledged (timeout)");
        }
        return this.store(data, msgId);
      },
    } as unknown as Transport;
  }

  private store(data: Uint8Array, msgId: string | undefined): PublishReceipt {
    const seen = msgId === undefined ? undefined : this.ids.get(msgId);
    if (seen !== undefined) return { stream: "S", seq: seen, duplicate: true };
    this.stored.push({ data: new TextDecoder().decode(data), msgId });
    const seq = this.stored.length;
    if (msgId !== undefined) this.ids.set(msgId, seq);
    return { stream: "S", seq, duplicate: false };
  }

  datas(): string[] {
    return this.stored.map((m) => m.data);
  }
}

const bytes = (s: string) => new TextEncoder().encode(s);

describe("a publisher during a leader election", () => {
  it("gives every publish a message id of its own unless the caller gives one", async () => {
    const s = new FlakyStream();
    const p = new Publisher(s.transport(), 8, { idPrefix: "w1." });
    p.publish("s", bytes("a"));
    p.publish("s", bytes("b"), undefined, "sink/0/1");
    await p.drain();
    expect(s.stored.map((m) => m.msgId)).toEqual(["w1.1", "sink/0/1"]);
  });

  it("repeats unacknowledged publishes in order once the stream is back, storing each once", async () => {
    const s = new FlakyStream();
    const retries: number[] = [];
    const p = new Publisher(s.transport(), 64, { retryPauseMs: 5, onRetry: (n) => retries.push(n) });
    for (let i = 0; i < 10; i++) p.publish("s", bytes(String(i)));
    await p.drain();
    s.down = true;
    // The first writes reached the dying leader and were stored; their acknowledgements were lost.
    s.storeWhileDown = (i) => i < 5;
    for (let i = 10; i < 30; i++) p.publish("s", bytes(String(i)));
    setTimeout(() => (s.down = false), 40);
    for (let i = 30; i < 40; i++) {
      await p.capacity();
      p.publish("s", bytes(String(i)));
    }
    await p.drain();
    expect(s.datas()).toEqual(Array.from({ length: 40 }, (_, i) => String(i)));
    expect(p.repeated).toBeGreaterThan(0);
    expect(retries.length).toBeGreaterThan(0);
  });

  it("fails, for the job to recover from its checkpoint, when a repeat would be stored after a later publish", async () => {
    const s = new FlakyStream();
    const p = new Publisher(s.transport(), 64, { retryPauseMs: 5 });
    s.down = true;
    s.storeWhileDown = (i) => i % 2 === 1; // b is stored, a is not: a repeated would land after b
    p.publish("s", bytes("a"));
    p.publish("s", bytes("b"));
    setTimeout(() => (s.down = false), 20);
    await expect(p.drain()).rejects.toThrow(/repeated after a lost acknowledgement was stored after later ones/);
  });

  it("holds publishes made while it repeats and sends them after, in order", async () => {
    const s = new FlakyStream();
    const p = new Publisher(s.transport(), 4, { retryPauseMs: 20 });
    s.down = true;
    p.publish("s", bytes("a"));
    p.publish("s", bytes("b"));
    await new Promise((r) => setTimeout(r, 10));
    s.down = false;
    p.publish("s", bytes("c"));
    await p.drainUpTo(3);
    expect(s.datas()).toEqual(["a", "b", "c"]);
  });

  it("fails, for the job to recover from its checkpoint, when the stream stays unavailable", async () => {
    const s = new FlakyStream();
    const p = new Publisher(s.transport(), 4, { retryPauseMs: 5, retryForMs: 40 });
    s.down = true;
    p.publish("s", bytes("a"));
    await expect(p.drain()).rejects.toThrow(PublishFailedError);
    await expect(p.drain()).rejects.toThrow(/not acknowledged for 0 s: publish to s not acknowledged \(timeout\)/);
  });

  it("fails at once on an error that repeating cannot cure", async () => {
    const s = new FlakyStream();
    s.other = new Error("Permissions Violation");
    const p = new Publisher(s.transport(), 4, { retryPauseMs: 5 });
    p.publish("s", bytes("a"));
    await expect(p.drain()).rejects.toThrow("publish to s failed: Permissions Violation");
    expect(p.repeated).toBe(0);
  });
});

describe("keptOrder", () => {
  const r = (seq: number): PublishReceipt => ({ stream: "S", seq, duplicate: false });
  it("holds while publishes are stored in the order they were made, per stream", () => {
    expect(keptOrder(new Map([[3, r(7)], [1, r(5)], [2, r(6)]]))).toBe(true);
    expect(keptOrder(new Map([[1, { stream: "T", seq: 9, duplicate: false }], [2, r(6)]]))).toBe(true);
    expect(keptOrder(new Map([[2, r(6)]]), new Map([["S", 5]]))).toBe(true);
  });

  it("is broken when a later publish was stored before an earlier one, or before one let go", () => {
    expect(keptOrder(new Map([[1, r(9)], [2, r(6)]]))).toBe(false);
    expect(keptOrder(new Map([[2, r(6)]]), new Map([["S", 8]]))).toBe(false);
  });
});
