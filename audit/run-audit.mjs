// Runs graphql-http's server audits against a running gateway.
// Usage: node run-audit.mjs URL [API_KEY]. Exit 1 on any error or warning.
import { serverAudits } from 'graphql-http';

const [url, key] = process.argv.slice(2);
if (!url) {
  console.error('usage: node run-audit.mjs URL [API_KEY]');
  process.exit(2);
}
// The gateway authenticates every operation: send the key on each audit request.
const fetchFn = (input, init = {}) => {
  const headers = new Headers(init.headers || {});
  if (key) headers.set('authorization', `Bearer ${key}`);
  return fetch(input, { ...init, headers });
};

let failed = 0;
for (const audit of serverAudits({ url, fetchFn })) {
  const result = await audit.fn();
  if (result.status !== 'ok') {
    failed += 1;
    console.log(`${result.status.toUpperCase()} ${audit.id} ${audit.name}: ${result.reason}`);
  }
}
const total = serverAudits({ url, fetchFn }).length;
console.log(`graphql-http audit: ${total - failed} ok, ${failed} not ok (of ${total})`);
process.exit(failed ? 1 : 0);
