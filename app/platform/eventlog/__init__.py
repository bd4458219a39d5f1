"""The event log on Redis Streams: keys, append, read and the consumer-group runtime."""
