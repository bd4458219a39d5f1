"""The baselines the ingress is measured against, each served by uvicorn like ``mecove api``.

Every baseline gets ``app.cli.UVICORN_OPTIONS`` (one worker, no access log), the options
``mecove api`` passes to ``uvicorn.run``, as JSON on its command line, so the servers differ
only in the application. The FastAPI peer is the exception: it runs stock uvicorn (no ``http``
option, decision 0036), as another team would, in an environment without this package.
"""
