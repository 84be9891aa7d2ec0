/**
 * CPU profiling of a section of a run (a benchmark's timed part, not its setup), written as a
 * `.cpuprofile` that Chrome DevTools or `node --cpu-prof` tooling reads. Enabled by setting
 * `EDDY_CPU_PROFILE=<file>`; otherwise a no-op.
 */
import { Session } from "node:inspector/promises";
import { writeFile } from "node:fs/promises";

export async function profileSection<T>(f: () => Promise<T>): Promise<T> {
  const file = process.env.EDDY_CPU_PROFILE;
  if (!file) return f();
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.start");
  try {
    return await f();
  } finally {
    const { profile } = await session.post("Profiler.stop");
    await writeFile(file, JSON.stringify(profile));
    session.disconnect();
  }
}
