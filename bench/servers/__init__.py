"""The baselines the ingress is measured against, each served by uvicorn like ``mecove api``.

Every baseline gets ``app.cli.UVICORN_OPTIONS`` (one worker, no access log), the options
``mecove api`` passes to ``uvicorn.run``, as JSON on its command line, so the servers differ
only in the application.
"""
