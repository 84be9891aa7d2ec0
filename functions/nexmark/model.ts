/**
 * The Nexmark event model (Person, Auction, Bid), as in Beam's Nexmark suite and the
 * nexmark/nexmark repository used for Flink: field names follow Flink's column names, times are
 * epoch milliseconds. One JSON object per event, tagged with `type`.
 */

export interface Person {
  readonly type: "person";
  readonly id: number;
  readonly name: string;
  readonly emailAddress: string;
  readonly creditCard: string;
  readonly city: string;
  readonly state: string;
  readonly dateTime: number;
  readonly extra: string;
}

export interface Auction {
  readonly type: "auction";
  readonly id: number;
  readonly itemName: string;
  readonly description: string;
  readonly initialBid: number;
  readonly reserve: number;
  readonly dateTime: number;
  readonly expires: number;
  readonly seller: number;
  readonly category: number;
  readonly extra: string;
}

export interface Bid {
  readonly type: "bid";
  readonly auction: number;
  readonly bidder: number;
  readonly price: number;
  readonly channel: string;
  readonly url: string;
  readonly dateTime: number;
  readonly extra: string;
}

export type NexmarkEvent = Person | Auction | Bid;

/** The queries eddy implements. */
export const QUERIES = ["q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q11"] as const;
export type QueryName = (typeof QUERIES)[number];
