"""Fault-tolerance suite (issue 8): nothing lost, nothing sent twice, no input breaks it."""
