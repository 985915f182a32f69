// A second, independent subgraph for the federation check: the "risk" team's service.
// It adds `Account.riskProfile` (from the account id alone) and a root list of flagged
// accounts whose other fields the supergraph fetches from Balance Gateway's `_entities`.
//
//   node risk-subgraph.mjs [port]     (port 0 = any free one; prints `listening <url>`)
// GET /stats tells how many requests came and how many carried credentials: this service
// must never be sent the client's key (see gateway.config.mjs).
import { createServer } from 'node:http';
import { buildSubgraphSchema } from '@apollo/subgraph';
import { parse } from 'graphql';
import { createYoga } from 'graphql-yoga';

const typeDefs = parse(`
  extend schema @link(url: "https://specs.apollo.dev/federation/v2.7", import: ["@key"])

  type Query {
    "Accounts the risk team is watching (their balances come from Balance Gateway)."
    flaggedAccounts: [Account]!
  }

  type Account @key(fields: "id") {
    id: ID!
    "LOW, MEDIUM or HIGH: a stand-in model, derived from the id."
    riskProfile: String
  }
`);

const FLAGGED = (process.env.RISK_FLAGGED_ACCOUNTS || 'demo').split(',').filter(Boolean);

// Deterministic: sum of the id's UTF-16 code units, mod 3 (tests compute the same).
export function riskProfile(id) {
  let sum = 0;
  for (const ch of String(id)) sum += ch.charCodeAt(0);
  return ['LOW', 'MEDIUM', 'HIGH'][sum % 3];
}

const resolvers = {
  Query: { flaggedAccounts: () => FLAGGED.map((id) => ({ id })) },
  Account: {
    __resolveReference: ({ id }) => ({ id }),
    riskProfile: ({ id }) => riskProfile(id),
  },
};

const yoga = createYoga({
  schema: buildSubgraphSchema([{ typeDefs, resolvers }]),
  graphqlEndpoint: '/graphql',
  graphiql: false,
  logging: 'warn',
});

const stats = { requests: 0, withCredentials: 0 };
const server = createServer((req, res) => {
  if (req.url === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(stats));
    return;
  }
  if (req.url.startsWith('/graphql')) {
    stats.requests += 1;
    if (req.headers.authorization || req.headers['x-api-key']) stats.withCredentials += 1;
  }
  yoga(req, res);
});

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
server.listen(port, '127.0.0.1', () => {
  console.log(`listening http://127.0.0.1:${server.address().port}/graphql`);
});
// Nothing to flush: exit at once (server.close would wait for the gateway's keep-alive sockets).
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
