"""What callers may ask for: decisions over plain request data, with no I/O."""
