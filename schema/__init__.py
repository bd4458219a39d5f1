"""The contracts of MeCove: events, ids and tables. Imports nothing else of the project."""
