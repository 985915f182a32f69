import { createClient } from "graphql-ws";

// Keep a portfolio screen current: an event at once, then one per change.
export function watchBalances(url, key, onChange) {
  const client = createClient({
    url,                                                  // wss://gateway.example.com/graphql
    connectionParams: { Authorization: `Bearer ${key}` }, // refused with close code 4403 if wrong
    shouldRetry: (closed) => closed?.code !== 4403,       // a wrong key stays wrong: no reconnecting
  });
  const stop = client.subscribe(
    {
      query: `subscription {
        viewerChanged(intervalS: 30) {
          changed { id amount token { symbol } value { amount currency } }
          removedHoldingIds
          totalValue(currency: "USD") { value { amount currency } complete }
          at
        }
      }`,
    },
    {
      next: ({ data, errors }) => (errors ? console.error(errors) : onChange(data.viewerChanged)),
      error: (error) => console.error("subscription failed", error?.code ?? error),
      complete: () => console.log("subscription ended"),
    },
  );
  return () => { stop(); client.dispose(); };
}
