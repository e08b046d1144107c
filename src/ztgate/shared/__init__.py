"""State the replicas (and a replica's workers) must share: quota counters, one-time tokens,
container owners. Where it lives follows the deployment (``shared/factory.py``)."""
