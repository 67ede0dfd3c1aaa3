export * from "./json.mjs";
