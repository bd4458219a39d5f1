"""The consumer-group runtime: read, handle, ack, retry, reclaim, dead-letter, shut down.

``handler`` is the interface handlers implement; ``consumer_runtime`` the core both modes
share; ``shared_runtime`` and ``ordered_runtime`` the two modes; ``process`` picks one per
handler and runs them; ``retry_policy`` says when to retry and when to give up.
"""
