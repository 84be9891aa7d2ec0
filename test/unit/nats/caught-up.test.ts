/**
 * What a reader of a consumer does after a silence (runtime/nats/caught-up.ts): caught up when
 * the consumer has nothing pending and everything it delivered was read, wait while messages are
 * in flight or for a while, stalled once pending messages have not come for the bound.
 */
import { describe, expect, it } from "vitest";
import { judgeIdleConsumer } from "../../../runtime/nats/caught-up.ts";

describe("a silence while reading a consumer", () => {
  it("is caught up when nothing is pending and every delivered message was read", () => {
    expect(judgeIdleConsumer({ pending: 0, delivered: 2 }, 2, 1000, 30_000)).toBe("caught-up");
  });

  it("waits for delivered messages not read yet, even with nothing pending", () => {
    expect(judgeIdleConsumer({ pending: 0, delivered: 3 }, 2, 60_000, 30_000)).toBe("wait");
  });

  it("waits for pending messages until the stall bound, then is stalled", () => {
    expect(judgeIdleConsumer({ pending: 1, delivered: 2 }, 2, 29_999, 30_000)).toBe("wait");
    expect(judgeIdleConsumer({ pending: 1, delivered: 2 }, 2, 30_000, 30_000)).toBe("stalled");
  });
});
