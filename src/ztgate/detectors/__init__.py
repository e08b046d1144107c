"""What counts as PII or a secret: detector definitions and the rules their patterns keep.

Plain definitions and pure checks, below the configuration (which compiles custom detectors
when it loads) and inspection (which scans with them).
"""
