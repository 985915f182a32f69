#!/usr/bin/env bash
# Fetch GraphiQL's browser assets from the npm registry so /graphql serves them itself
# (without them the page falls back to the unpkg CDN and says so).
#
# Versions and hashes are pinned in gateway/server/graphiql_assets.json: each tarball must match
# its npm integrity and each file its SRI hash, or nothing is installed. The files land in
# gateway/server/static/graphiql/<package>@<version>/<path> (git-ignored; never committed).
# Needs node and npm. Usage: scripts/fetch_graphiql_assets.sh [DEST_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

manifest=gateway/server/graphiql_assets.json
dest=${1:-gateway/server/static/graphiql}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One line per package: name, version, tarball integrity.
node -e '
  const m = require(process.argv[1]);
  for (const p of m.packages) console.log([p.name, p.version, p.tarball].join(" "));
' "$PWD/$manifest" > "$work/packages"

while read -r name version integrity; do
  # npm pack verifies the download against the registry's metadata; we also hold it to our pin.
  (cd "$work" && npm pack "$name@$version" --json --silent 2>/dev/null) > "$work/pack.json"
  got=$(node -e 'console.log(require(process.argv[1])[0].integrity)' "$work/pack.json")
  if [[ "$got" != "$integrity" ]]; then
    echo "fetch_graphiql_assets: $name@$version integrity $got is not the pinned $integrity" >&2
    exit 1
  fi
  mkdir -p "$work/x/$name@$version"
  tar -xzf "$work/$(node -e 'console.log(require(process.argv[1])[0].filename)' "$work/pack.json")" \
      -C "$work/x/$name@$version" --strip-components=1
  echo "fetch_graphiql_assets: $name@$version"
done < "$work/packages"

# Keep only the pinned files, each checked against its SRI hash, then swap the folder in whole.
node -e '
  const fs = require("fs"), path = require("path"), crypto = require("crypto");
  const [manifest, src, out] = process.argv.slice(1);
  for (const p of require(manifest).packages) {
    for (const [file, sri] of Object.entries(p.files)) {
      const from = path.join(src, `${p.name}@${p.version}`, file);
      const got = "sha384-" + crypto.createHash("sha384").update(fs.readFileSync(from)).digest("base64");
      if (got !== sri) { console.error(`fetch_graphiql_assets: ${p.name}@${p.version}/${file} hash ${got} is not the pinned ${sri}`); process.exit(1); }
      const to = path.join(out, `${p.name}@${p.version}`, file);
      fs.mkdirSync(path.dirname(to), { recursive: true });
      fs.copyFileSync(from, to);
    }
  }
' "$PWD/$manifest" "$work/x" "$work/out"

mkdir -p "$(dirname "$dest")"
rm -rf "$dest.old"
[[ -e "$dest" ]] && mv "$dest" "$dest.old"
mv "$work/out" "$dest"
rm -rf "$dest.old"
echo "fetch_graphiql_assets: installed in $dest"
