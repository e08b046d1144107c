"""The base layer: plain data every stage shares, importing nothing above it.

The request context and the types it is made of, the error tree and its envelope, SSE framing,
identities, decisions and what they are decided on, findings, mask plans, the texts of a body,
and the interfaces of the pipeline's stages. Everything in ztgate may import these; they import
only each other (the import contracts in pyproject.toml hold it).
"""
