/**
 * An input read a few messages ahead of its handling, so that what the next messages need can be
 * asked for while the current one is handled: the keys of a batch not in memory are read from KV
 * (design note bf), and a read loop that asks only when it reaches a message waits a round trip
 * per message with nothing else to do.
 *
 * The messages come out in the order they went in, each once; `arrived` sees each as it enters
 * the window (it must not throw, and must not handle the message: it may only start work that
 * the handling would otherwise start). A failure of the input comes out where the message after
 * the last one read would have.
 */

/**
 * `input` read up to `depth` messages ahead of the caller.
 *
 * @example
 *   for await (const m of readAhead(reader, 4, (m) => prefetchKeysOf(m))) handle(m);
 */
export function readAhead<T>(input: AsyncIterable<T>, depth: number, arrived: (m: T) => void): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<T> {
      const source = input[Symbol.asyncIterator]();
      const window: T[] = [];
      let ended = false;
      let returned = false;
      let failure: { readonly error: unknown } | undefined;
      let pumping = false;
      /** The caller waiting for the next message, if any. */
      let waiting: (() => void) | undefined;

      const wakeCaller = () => {
        const w = waiting;
        waiting = undefined;
        w?.();
      };
      // One pump at a time, started whenever there is room: it reads until the window is full.
      const pump = async () => {
        if (pumping) return;
        pumping = true;
        try {
          while (!ended && window.length < depth) {
            let r: IteratorResult<T>;
            try {
              r = await source.next();
            } catch (e) {
              failure = { error: e };
              ended = true;
              break;
            }
            if (r.done) {
              ended = true;
              break;
            }
            if (returned) break;
            window.push(r.value);
            arrived(r.value);
            wakeCaller();
          }
        } finally {
          pumping = false;
          wakeCaller();
        }
      };

      return {
        async next(): Promise<IteratorResult<T>> {
          for (;;) {
            if (window.length > 0) {
              const m = window.shift() as T;
              void pump();
              return { done: false, value: m };
            }
            if (ended) {
              if (failure !== undefined) {
                const { error } = failure;
                failure = undefined;
                throw error;
              }
              return { done: true, value: undefined };
            }
            const arrival = new Promise<void>((resolve) => (waiting = resolve));
            void pump();
            await arrival;
          }
        },
        async return(): Promise<IteratorResult<T>> {
          ended = true;
          returned = true;
          window.length = 0;
          await source.return?.();
          return { done: true, value: undefined };
        },
      };
    },
  };
}
