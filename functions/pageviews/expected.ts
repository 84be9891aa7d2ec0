/**
 * The page-view results computed the plain way, to check the streaming pipeline against.
 *
 * A single loop over the valid events in the order they were published. Event time and lateness
 * follow the definitions the pipeline promises, without any of its machinery: the watermark
 * before an event is the highest event time seen so far minus the out-of-orderness bound minus
 * one; a window [start, end) fires when that watermark reaches end - 1 with everything counted so
 * far; an event whose window ended more than the allowed lateness before the watermark is late;
 * any other event for an already fired window updates it and fires it again. At the end of input
 * every window still open fires.
 */
import type { GeneratedMessage, PageView } from "./events.ts";
import { ALLOWED_LATENESS_MS, MAX_OUT_OF_ORDERNESS_MS, WINDOW_MS, type PageWindow } from "./pipeline.ts";

export interface ExpectedResults {
  readonly windows: PageWindow[];
  readonly late: PageView[];
  readonly deadLettered: number;
}

export function expectedResults(messages: readonly GeneratedMessage[]): ExpectedResults {
  const open = new Map<string, { page: string; channel: string; start: number; views: number; users: Set<string>; fired: boolean }>();
  const windows: PageWindow[] = [];
  const late: PageView[] = [];
  let maxTs = -Infinity;
  const emit = (w: { page: string; channel: string; start: number; views: number; users: Set<string> }, firing: PageWindow["firing"]) =>
    windows.push({ page: w.page, channel: w.channel, windowStart: w.start, windowEnd: w.start + WINDOW_MS, views: w.views, users: w.users.size, firing });
  const fireUpTo = (watermark: number) => {
    const due = [...open.values()].filter((w) => !w.fired && w.start + WINDOW_MS - 1 <= watermark);
    due.sort((a, b) => a.start - b.start);
    for (const w of due) {
      emit(w, "on-time");
      w.fired = true;
    }
  };

  for (const m of messages) {
    if (m.event === undefined) continue;
    const e = m.event;
    const watermark = maxTs - MAX_OUT_OF_ORDERNESS_MS - 1;
    fireUpTo(watermark);
    const start = Math.floor(e.ts / WINDOW_MS) * WINDOW_MS;
    if (start + WINDOW_MS - 1 + ALLOWED_LATENESS_MS <= watermark) {
      late.push(e);
    } else {
      const id = `${e.page}|${e.channel}|${start}`;
      let w = open.get(id);
      if (w === undefined) open.set(id, (w = { page: e.page, channel: e.channel, start, views: 0, users: new Set(), fired: false }));
      w.views++;
      w.users.add(e.user);
      // A window whose end the watermark already passed fires again (or for the first time) at once.
      if (w.fired || start + WINDOW_MS - 1 <= watermark) {
        emit(w, "late");
        w.fired = true;
      }
    }
    maxTs = Math.max(maxTs, e.ts);
  }
  fireUpTo(Infinity);
  return { windows, late, deadLettered: messages.filter((m) => m.event === undefined).length };
}
