// A keyed running count: how many clicks each user has made so far.
// Used by docs/getting-started.md; run it with
//   npx eddy worker --pipeline docs/examples/clicks/pipeline.ts --nats nats://127.0.0.1:4222
import { defineFunction, definePipeline, defineSink, fromFunction, fromStream, valueState } from "../../../runtime/sdk/index.ts";

interface Click {
  readonly user: string;
  readonly page: string;
}

// Source: reads the user stream CLICKS (JSON payloads) and passes every click on.
const clicks = defineFunction<Click, Click>({
  name: "clicks",
  input: fromStream("CLICKS", { subject: "clicks.>" }),
  process(ctx, click) {
    ctx.emit(click);
  },
});

// Keyed by user: every user's clicks meet the same state, in one of 8 partitions (the default).
const count = defineFunction({
  name: "count",
  input: fromFunction(clicks),
  key: (c: Click) => {
    if (typeof c.user !== "string") throw new Error('missing field "user"');
    return c.user;
  },
  state: { clicks: valueState<number>() },
  process(ctx, _click: Click) {
    const n = ctx.state.clicks.update((n) => (n ?? 0) + 1);
    ctx.emit({ user: ctx.key, clicks: n });
  },
});

// Sink: publishes every count to counts.clicks (captured by the user stream COUNTS).
const out = defineSink<{ user: string; clicks: number }>({
  name: "out",
  input: fromFunction(count),
  subject: "counts.clicks",
});

export default definePipeline({ name: "clicks", functions: [clicks, count, out] });
