"""Field resolvers and the per-request loaders. Nothing here knows GraphQL types beyond `info.context`."""
