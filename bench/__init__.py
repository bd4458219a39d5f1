"""Benchmarks that print figures and ratios against baselines measured in the same run.

Nothing here asserts a speed: each module measures MeCove and a baseline side by side and
prints both, the ratio and the budget it is held to (met or not).

* ``python -m bench.ingress``   — signed webhooks at the ingress vs bare Litestar and FastAPI+arq
* ``python -m bench.projector`` — projector drain (and replay) vs raw asyncpg COPY
* ``python -m bench.e2e``       — webhook → reply sent latency, replier throughput per process
* ``python -m bench``           — all of them, one table; ``--smoke`` for tiny sizes (CI)
"""
