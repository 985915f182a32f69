"""Faithful ASGI imitations of the five upstream APIs, for the demo, the tests and the bench."""
