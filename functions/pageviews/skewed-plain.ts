/**
 * The skewed page-view job without split distinct aggregation: one function, `page-stats`, keyed
 * by page and channel, so the hot page's views all go to the partitions of its three keys. For
 * comparison with the split job (skewed.ts; `npm run bench -- skew`).
 */
import { skewedPageviewsPipeline } from "./skewed.ts";

export default skewedPageviewsPipeline({ split: 0 });
