// Runs the browser example (watch-balances.mjs, the code in docs/SCHEMA.md "Live") under node:
// the `ws` package is the browser's WebSocket. Prints each event as one JSON line; exits
// after `events` events (default 1).   node run.mjs ws://127.0.0.1:8000/graphql demo-key [events]
import WebSocket from "ws";
globalThis.WebSocket = WebSocket;
const { watchBalances } = await import("./watch-balances.mjs");

// The example reports a failed subscription on console.error: then this run is over.
const report = console.error;
console.error = (...args) => { report(...args); if (args[0] === "subscription failed") process.exit(1); };

const [url, key, wanted = "1"] = process.argv.slice(2);
let seen = 0;
const timer = setTimeout(() => { console.error("no event in time"); process.exit(2); }, 20000);
const stop = watchBalances(url, key, (change) => {
  console.log(JSON.stringify(change));
  if (++seen >= Number(wanted)) { clearTimeout(timer); stop(); setTimeout(() => process.exit(0), 50); }
});
