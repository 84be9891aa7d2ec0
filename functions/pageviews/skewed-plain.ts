/**
 * The skewed page-view job without its skew fixes: no local-global aggregation and no split, one
 * function, `page-stats`, keyed by page and channel, so every view of the hot page goes to the
 * partitions of its three keys. For comparison with skewed.ts (`npm run bench -- skew`).
 */
import { skewedPageviewsPipeline } from "./skewed.ts";

export default skewedPageviewsPipeline({ split: 0, localAggregation: false });
