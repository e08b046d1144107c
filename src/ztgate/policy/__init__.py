"""What callers may ask for: the policy document and its loading, the pure engine that decides
over plain request facts, the live reloadable policy, quotas (the one part with I/O: counters
in memory or Redis), and the decide stage."""
