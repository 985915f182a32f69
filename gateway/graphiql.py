"""The GraphiQL page: an example query, and the header editor preset with the demo key."""
from __future__ import annotations

import json

EXAMPLE_QUERY = """# Send your account key in the Headers tab below:
#   {"Authorization": "Bearer <your key>"}   (the demo account's key is demo-key)
query Portfolio {
  viewer {
    id
    totalValue(currency: "USD") { value { amount currency } complete unpricedHoldings failedSources }
    sources { source state fetchedAt error { code message } warnings { code message } }
    wallets { id source kind provider label address addressHint chain { id name } }
    holdings(first: 20) {
      totalCount
      nodes {
        source
        wallet { label provider address addressHint }
        token { id symbol decimals chain { id } }
        amount amountRaw precision
        value { amount currency }
        price { unit currency reliability }
      }
    }
  }
}
"""

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8" />
  <title>Balance Gateway · GraphiQL</title>
  <style>body {{ margin: 0; height: 100vh; }} #graphiql {{ height: 100vh; }}</style>
  <link rel="stylesheet" href="https://unpkg.com/graphiql@3.8.3/graphiql.min.css" />
</head>
<body>
  <div id="graphiql">Loading GraphiQL…</div>
  <script crossorigin src="https://unpkg.com/react@18.3.1/umd/react.production.min.js"></script>
  <script crossorigin src="https://unpkg.com/react-dom@18.3.1/umd/react-dom.production.min.js"></script>
  <script crossorigin src="https://unpkg.com/graphiql@3.8.3/graphiql.min.js"></script>
  <script>
    const fetcher = GraphiQL.createFetcher({{ url: window.location.pathname }});
    ReactDOM.createRoot(document.getElementById("graphiql")).render(
      React.createElement(GraphiQL, {{
        fetcher,
        defaultQuery: {query},
        defaultHeaders: {headers},
        headerEditorEnabled: true,
        shouldPersistHeaders: false,
        defaultEditorToolsVisibility: "headers",
      }})
    );
  </script>
</body>
</html>
"""


def graphiql_html(default_key: str | None) -> str:
    headers = json.dumps({"Authorization": f"Bearer {default_key or '<your key>'}"}, indent=2)
    return _PAGE.format(query=json.dumps(EXAMPLE_QUERY), headers=json.dumps(headers))
