# Clearance: `clearance serve` in a slim image, as a user without privileges.
# Build: docker build -t clearance .   Run: see compose.yaml and README.md (Container).
FROM python:3.12-slim AS build
WORKDIR /src
# Only what the package is built from: tests, docs and caches stay out (.dockerignore too).
COPY pyproject.toml README.md LICENSE ./
COPY engine engine
COPY storage storage
COPY bot bot
COPY adapters adapters
COPY message_templates message_templates
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
# No .pyc files written at run time (read-only root file systems); logs straight out.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=3000 \
    CLEARANCE_POLICY=/etc/clearance/policy.yaml
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /var/lib/clearance --create-home clearance
# The example policy, so that the image starts as it is; mount your own over it.
COPY examples/policy.yaml /etc/clearance/policy.yaml
WORKDIR /var/lib/clearance
USER 10001
EXPOSE 3000
# Liveness: the process answers. /readyz (database, schema, policy) is for load balancers.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"3000\")}/healthz', timeout=4)"]
# Docker sends SIGTERM on stop: serve finishes in-flight work within CLEARANCE_SHUTDOWN_SECONDS.
STOPSIGNAL SIGTERM
ENTRYPOINT ["clearance"]
CMD ["serve"]
