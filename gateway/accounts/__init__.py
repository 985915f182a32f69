"""The account registry: accounts, their upstream identities and gateway keys in the store
(gateway/store/), changed through the admin API or the CLI while every process runs.

crypto (credentials at rest), tables (the SQL schema), links (what an identity may look
like, checked as the config checks it), admin (the changes, one transaction each), directory
(the in-memory view auth and resolvers read, kept current by polling the change feed)."""
