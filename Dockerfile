# The churnpulse image: `docker build -t churnpulse .`, then `docker run churnpulse worker`.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY online_models ./online_models
COPY alerts ./alerts
RUN pip install --no-cache-dir ".[parquet]" && useradd --system --uid 10001 churnpulse \
    && mkdir -p /var/lib/churnpulse && chown churnpulse /var/lib/churnpulse
USER churnpulse
ENTRYPOINT ["churnpulse"]
CMD ["worker"]
