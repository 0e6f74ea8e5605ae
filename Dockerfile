# One image for every relay role: web, worker, beat and the migrate job (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RELAY_VAR_DIR=/app/var

WORKDIR /app

RUN useradd --create-home --uid 10001 --user-group relay

# Only what the application needs: no .venv, var/ (local database, dev token), .git or tests.
# README.md is read by pyproject.toml (project.readme).
COPY pyproject.toml README.md ./
COPY relay ./relay
COPY workers ./workers
COPY webhooks ./webhooks
COPY templates ./templates
COPY config/sms_prices.csv ./config/sms_prices.csv

# Editable install: relay finds templates/ and the default var/ next to its source (relay/infra/settings.py PROJECT_ROOT).
RUN pip install -e . \
    && mkdir -p /app/var \
    && chown relay:relay /app/var

USER relay
EXPOSE 8000

CMD ["relay", "web", "--host", "0.0.0.0", "--port", "8000"]
