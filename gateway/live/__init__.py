"""Live balances: one poller per (source, upstream identity), whatever the number of
subscribers, in this process and across processes (gateway/live/hub.py), and the
comparison that decides what an event carries (gateway/live/changes.py)."""
