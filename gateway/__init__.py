"""Balance Gateway: one GraphQL schema over five REST balance APIs."""
