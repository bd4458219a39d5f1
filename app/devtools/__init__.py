"""Developer tooling: embedded servers (`mecove dev`), the traffic simulator and the simulated
Graph API. Product code never imports it."""
