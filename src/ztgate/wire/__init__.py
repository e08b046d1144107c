"""The Anthropic API as data: the shape of its JSON bodies and query strings, read without I/O.

Everything here is a pure function over parsed values; the data path calls it to refuse what
the API would not accept, and inspection to find every text the model can read.
"""
