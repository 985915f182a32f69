// Many users: each upstream credential comes from the client request (Authorization for the
// bearer APIs, an `xuser` header for the key APIs), so every request can be a different user
// with a different set of upstream credentials. bench.perf (bench/hive_gateway.py) sends
// `Authorization: Bearer user-N` and `xuser: user-N`; the fakes accept user-1..user-FAKE_USERS.
// GraphQL Mesh v1 compose config: the five balance REST APIs (OpenAPI descriptions in
// ./openapi) composed into one supergraph, served by Hive Gateway (@graphql-mesh/transport-rest).
//
// Base URLs are `{env.NAME}` templates that transport-rest interpolates from the gateway's
// environment (CALICO_BASE_URL CRYPTOFUSE_BASE_URL ONEBALANCE_BASE_URL COBO_BASE_URL
// DALP_API_URL); credentials are `{context.headers.NAME}`, taken from each client request.
import { defineConfig } from '@graphql-mesh/compose-cli';
import { loadOpenAPISubgraph } from '@omnigraph/openapi';

export const composeConfig = defineConfig({
  subgraphs: [
    {
      sourceHandler: loadOpenAPISubgraph('Calico', {
        source: './openapi/calico.yaml',
        endpoint: '{env.CALICO_BASE_URL}',
        operationHeaders: { Authorization: '{context.headers.authorization}' },
      }),
    },
    {
      sourceHandler: loadOpenAPISubgraph('Cryptofuse', {
        source: './openapi/cryptofuse.yaml',
        endpoint: '{env.CRYPTOFUSE_BASE_URL}',
        operationHeaders: { Authorization: '{context.headers.authorization}' },
      }),
    },
    {
      sourceHandler: loadOpenAPISubgraph('OneBalance', {
        source: './openapi/onebalance.yaml',
        endpoint: '{env.ONEBALANCE_BASE_URL}',
        operationHeaders: { 'x-api-key': '{context.headers.xuser}' },
      }),
    },
    {
      sourceHandler: loadOpenAPISubgraph('Cobo', {
        source: './openapi/cobo.yaml',
        endpoint: '{env.COBO_BASE_URL}',
        operationHeaders: { 'X-API-Key': '{context.headers.xuser}' },
      }),
    },
    {
      sourceHandler: loadOpenAPISubgraph('Dalp', {
        source: './openapi/dalp.yaml',
        endpoint: '{env.DALP_API_URL}',
        operationHeaders: { 'X-Api-Key': '{context.headers.xuser}' },
      }),
    },
  ],
});
