"""The data path: the ASGI gateway that every Claude API call flows through."""
