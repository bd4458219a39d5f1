"""How a process is put together: settings → clients → event log → handlers → runtimes.

- ``clients`` — the Redis client, the PostgreSQL pool and the event log every process opens
  (imports ``app.platform`` only, so the ingress and the operator's commands use it too).
- ``consumer_service`` — the handlers of the consumer groups (projector, replier, summarizer)
  and the runtimes that run them; what ``mecove consume`` runs and tests and benchmarks reuse.

This package sits above ``projections`` and ``consumers``: it imports them, they never import it.
"""

# The consumer groups, in the order ``mecove up`` starts them. Here rather than in
# ``consumer_service`` so that the command line can offer them without importing the consumers.
GROUPS = ("projector", "replier", "summarizer")
