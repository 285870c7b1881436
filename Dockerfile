# A first working image; the deployment issue (#7) hardens it (multi-stage, healthcheck).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# collectstatic needs settings that load; the real key comes from the environment at run time.
RUN DJANGO_SECRET_KEY=build-only-collectstatic python manage.py collectstatic --noinput -v0 \
    && useradd --system --uid 10001 --no-create-home app
USER app

ENV HOST=0.0.0.0 PORT=8000
EXPOSE 8000
CMD ["gunicorn", "-c", "config/gunicorn.py", "config.wsgi"]
