// Hive Gateway configuration for the composed supergraph (see compose.mjs):
//   npx hive-gateway supergraph SUPERGRAPH.graphql -c gateway.config.mjs --host 127.0.0.1 --port 4000
import { defineConfig } from '@graphql-hive/gateway';

// The subgraph (name given to compose.mjs) that authenticates callers by these headers.
const BALANCE_SUBGRAPH = process.env.BALANCE_SUBGRAPH_NAME || 'balance';
const CREDENTIAL_HEADERS = ['authorization', 'x-api-key'];

export const gatewayConfig = defineConfig({
  // Balance Gateway decides what the caller may read from the caller's own key, so the
  // key must reach it unchanged; no other subgraph is ever sent it.
  propagateHeaders: {
    fromClientToSubgraphs({ request, subgraphName }) {
      if (subgraphName !== BALANCE_SUBGRAPH) return {};
      const headers = {};
      for (const name of CREDENTIAL_HEADERS) {
        const value = request.headers.get(name);
        if (value) headers[name] = value;
      }
      return headers;
    },
  },
});
