"""The Celery broker: the Redis transport, probes of either broker (its kind, whether it
answers, its queue depths), and the primary pin that tasks carry in their headers."""
