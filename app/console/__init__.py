"""The operator's console at ``/console``: server-rendered pages over the projections and Redis.

Off unless ``MECOVE_CONSOLE_TOKEN`` is set. ``plugin.console_plugins`` is the only thing the
ingress app registers; the webhook route shares nothing with it but the pools.
"""
