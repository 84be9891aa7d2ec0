/**
 * The rule-detection pipeline of functions/rules/ is a valid job: the security-events source
 * feeds liveRules' keying and matcher functions, the rule stream feeds the rules source, and the
 * alerts go to the exactly-once sink subject.
 */
import { describe, expect, it } from "vitest";
import { buildJobGraph } from "../../../runtime/core/job-graph.ts";
import { rulesPipeline } from "../../../functions/rules/pipeline.ts";

describe("the rules scenario's pipeline", () => {
  it("builds a job graph of the events source, the rules source, the keying function, the matcher and the alerts sink", () => {
    const graph = buildJobGraph(rulesPipeline({ job: "sec" }));
    expect(graph.job).toBe("sec");
    const names = graph.functions.map((f) => f.name).sort();
    expect(names).toContain("security-events");
    expect(names).toContain("rules");
    expect(names.filter((n) => n.startsWith("rules-")).length).toBeGreaterThanOrEqual(2);
    expect(graph.functions.find((f) => f.name === "rules")!.partitions).toBe(4);
  });
});
