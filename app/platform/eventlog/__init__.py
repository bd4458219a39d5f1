"""The event log on Redis Streams: key names (``keys``, ``conversation_keys``), how an event
sits in an entry (``entries``), Lua building blocks (``lua``) and appending (``append``)."""
