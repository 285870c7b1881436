# syntax=docker/dockerfile:1
# One image for every process: web (the default command), worker, beat and migrate
# (deploy/k8s and compose.yaml override the command). Build: docker build -t userservice .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: dependencies into a self-contained virtualenv ------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
COPY requirements.txt scripts/install_runtime.sh ./
# The same script as `make`'s runtime environment and CI's runtime-parity stage: the
# hashed runtime lock and nothing else. Every pinned dependency ships a manylinux wheel,
# so nothing is compiled; anything that ever needs a compiler would get it here, never in
# the final stage.
RUN PYTHON=python sh install_runtime.sh /opt/venv requirements.txt

# --- final: the app, its virtualenv and collected static files; no build tools -----------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    HOST=0.0.0.0 \
    PORT=8000
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
# Owned by root and read-only to the app user: the process cannot rewrite its own code.
COPY . .
# collectstatic needs settings that load, and they refuse any key written down anywhere:
# a throwaway random one, used for nothing else. The real key comes from the environment
# at run time. Compiling now lets the container run with a read-only root filesystem.
RUN DJANGO_SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
    python manage.py collectstatic --noinput -v0 \
    && python -m compileall -q /app /opt/venv
USER 10001:10001
EXPOSE 8000
# Liveness only (no dependencies); worker and beat containers disable it (compose.yaml).
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "scripts/healthcheck.py"]
CMD ["gunicorn", "-c", "config/gunicorn.py", "config.wsgi"]
