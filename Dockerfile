# MeCove image: one image for every process (`mecove api`, `mecove consume <group>`,
# `mecove migrate`, or `mecove up` for everything in one container).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MECOVE_LOG_FORMAT=json

RUN groupadd --system mecove \
    && useradd --system --gid mecove --home-dir /app --no-create-home --shell /usr/sbin/nologin mecove

# 1) Dependencies only, so this layer is rebuilt only when pyproject.toml changes.
#    The runtime dependencies and the build backend are read from pyproject.toml with tomllib.
#    (README.md* is a glob so the build does not fail while the README does not exist yet.)
WORKDIR /app
COPY pyproject.toml README.md* /tmp/deps/
RUN python -c "import tomllib; p = tomllib.load(open('/tmp/deps/pyproject.toml', 'rb')); print('\n'.join(p['project']['dependencies'] + p['build-system']['requires']))" > /tmp/deps/requirements.txt \
    && pip install -r /tmp/deps/requirements.txt

# 2) The project itself, without touching the dependencies. It is installed from a throwaway
#    copy, so at run time the code (and the package data consumers/llm/llm.yaml and the
#    migrations in schema/migrations/) comes from site-packages, never from a source tree
#    in the working directory.
COPY . /tmp/src
RUN pip install --no-deps --no-build-isolation /tmp/src \
    && rm -rf /tmp/src \
    && python -c "import consumers.llm.llm_config as c; c.load_llm_config()"

# The working directory holds nothing but an optional .env (e.g. mounted by the operator).
RUN chown mecove:mecove /app

EXPOSE 8000
USER mecove

ENTRYPOINT ["mecove"]
CMD ["up"]
