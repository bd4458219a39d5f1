"""``mecove simulate``: realistic signed webhook traffic, and the conversation it produces.

- ``traffic_plan`` — pure: who sends what when (bursts, duplicate deliveries), Meta's bodies.
- ``transcript`` — pure: which user message a reply answers, the printed lines, the summary.
- ``simulate_options`` — the command-line options (light: the parser imports it).
- ``simulate_command`` — the run: built-in fake Graph API, the service (``mecove dev``), the
  traffic, the live transcript.
"""
