"""Operating the log: status, dead letters, retention."""
