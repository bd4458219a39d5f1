"""The consumer-group runtime: read, handle, ack, retry, reclaim, dead-letter, shut down."""
