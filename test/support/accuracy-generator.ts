/**
 * The accuracy scenario's seeded generator lives with the scenario (functions/accuracy/generator.ts,
 * as functions/rules/events.ts does for the rules scenario); tests import it from here.
 */
export * from "../../functions/accuracy/generator.ts";
