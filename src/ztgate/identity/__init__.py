"""Who can ask: turn a caller's bearer token into a verified identity, or refuse it."""
