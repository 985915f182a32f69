// Composes subgraph SDLs into an Apollo Federation 2 supergraph with @apollo/composition.
//
//   node compose.mjs OUT.graphql NAME=URL [NAME=URL ...]
//
// Each subgraph's SDL is read from its `_service { sdl }` (what a router would see), or
// from a file with NAME=URL@FILE (e.g. balance=http://127.0.0.1:8000/graphql@../schema.graphql).
// COMPOSE_AUTHORIZATION, when set, is sent as the Authorization header to subgraph
// `balance` only (Balance Gateway answers nothing without a key). Exits 1 on composition errors.
import { readFile, writeFile } from 'node:fs/promises';
import { composeServices } from '@apollo/composition';
import { parse } from 'graphql';

async function fetchSdl(name, url) {
  const headers = { 'content-type': 'application/json' };
  if (name === 'balance' && process.env.COMPOSE_AUTHORIZATION) headers.authorization = process.env.COMPOSE_AUTHORIZATION;
  const response = await fetch(url, {
    method: 'POST', headers, body: JSON.stringify({ query: '{ _service { sdl } }' }),
    signal: AbortSignal.timeout(10_000),
  });
  const body = await response.json().catch(() => ({}));
  const sdl = body?.data?._service?.sdl;
  if (!response.ok || typeof sdl !== 'string') {
    throw new Error(`${name}: no _service.sdl from ${url} (HTTP ${response.status}): ${JSON.stringify(body.errors ?? [])}`);
  }
  return sdl;
}

const [out, ...specs] = process.argv.slice(2);
if (!out || specs.length === 0) {
  console.error('usage: node compose.mjs OUT.graphql NAME=URL[@FILE] ...');
  process.exit(2);
}

const services = [];
for (const spec of specs) {
  const [name, rest] = [spec.slice(0, spec.indexOf('=')), spec.slice(spec.indexOf('=') + 1)];
  const at = rest.indexOf('@');
  const url = at < 0 ? rest : rest.slice(0, at);
  const sdl = at < 0 ? await fetchSdl(name, url) : await readFile(rest.slice(at + 1), 'utf8');
  services.push({ name, url, typeDefs: parse(sdl) });
}

const result = composeServices(services);
if (result.errors?.length) {
  for (const error of result.errors) console.error(`composition error: ${error.message}`);
  process.exit(1);
}
for (const hint of result.hints ?? []) console.error(`hint: ${hint.definition?.code ?? ''} ${hint.message}`);
await writeFile(out, result.supergraphSdl);
console.log(`composed ${services.map((s) => s.name).join(' + ')} -> ${out}`);
