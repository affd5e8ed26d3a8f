# One image for every app service (migrate, webhooks, worker, scheduler); docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN useradd --create-home --uid 10001 medspa

# Editable install: the code stays in /app, where the services find alembic.ini, alembic/, seed_data.sql and
# the widget's static files next to the packages.  Versions from requirements.lock (scripts/lock.sh).
COPY . /app
RUN pip install -c requirements.lock -e . && chown -R medspa:medspa /app

USER medspa
EXPOSE 8000
CMD ["medspa", "--help"]
