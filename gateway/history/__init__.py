"""Value history: snapshots of each account's valued holdings in the `[store]` database,
taken when an account is read (docs/HISTORY.md), and the series read back from them."""
