"""The platform every MeCove process stands on: settings, logs, metrics, clients, the event
log and the consumer-group runtime. It imports nothing of ours but ``schema``."""
