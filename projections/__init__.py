"""Event -> row logic, the projector consumer, and replay."""
