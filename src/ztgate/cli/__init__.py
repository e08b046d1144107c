"""The ``ztgate`` command line."""
