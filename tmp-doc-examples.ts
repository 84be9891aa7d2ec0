import { defineFunction, defineSink, fromFunction, intervalJoin, streamJoin, tumbling, valueState, windowJoin, type ValueStateDeclaration } from "eddy/sdk";

interface Customer { id: string; name: string; ts: number }
interface Order { id: string; customer: string; ts: number }

export const withCustomer = defineFunction<Customer | Order, { order: string; name: string }, { customer: ValueStateDeclaration<Customer> }>({
  name: "orders-with-customer",
  input: [fromFunction("customers"), fromFunction("orders")],      // input 0, input 1
  key: (r, input) => (input === 0 ? (r as Customer).id : (r as Order).customer),
  state: { customer: valueState<Customer>() },
  process(ctx, r) {
    if (ctx.input === 0) {
      ctx.state.customer.set(r as Customer);
      return;
    }
    const c = ctx.state.customer.get();
    if (c !== undefined) ctx.emit({ order: (r as Order).id, name: c.name });
  },
});

interface Person { id: number; name: string; city: string }
interface Auction { id: number; seller: number }

export const sellers = streamJoin({
  name: "sellers",
  left: fromFunction("events", "persons"),
  right: fromFunction("events", "auctions"),
  leftKey: (p: Person) => String(p.id),
  rightKey: (a: Auction) => String(a.seller),
  output: (p, a) => ({ name: p.name, city: p.city, auction: a.id }),
});

interface Shipment { order: string; ts: number }

export const shippedInADay = intervalJoin({
  name: "shipped-in-a-day",
  left: fromFunction("orders"),
  right: fromFunction("shipments"),
  leftKey: (o: Order) => o.id,
  rightKey: (s: Shipment) => s.order,
  lowerBoundMs: 0,
  upperBoundMs: 86_400_000,
  output: (o, s) => ({ order: o.id, hours: (s.ts - o.ts) / 3_600_000 }),
});

export const newSellers = windowJoin({
  name: "new-sellers",
  left: fromFunction("events", "persons"),
  right: fromFunction("events", "auctions"),
  leftKey: (p: Person) => String(p.id),
  rightKey: (a: Auction) => String(a.seller),
  window: tumbling(10_000),
  apply: (id, w, persons, auctions) => (persons.length > 0 && auctions.length > 0 ? [{ id, start: w.start, auctions: auctions.length }] : []),
});

export const out = defineSink({ name: "out", input: fromFunction("new-sellers"), subject: "results.new-sellers", format: "json-lines", delivery: "at-least-once" });
