# The socialrec worker and CLI. Used by docker-compose.yml; `make` targets do not need it.
FROM python:3.11.11-slim-bookworm
WORKDIR /app
COPY pyproject.toml README.md topics.yaml ./
COPY streams ./streams
COPY models ./models
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 socialrec
USER socialrec
ENV SOCIALREC_TOPICS_FILE=/app/topics.yaml \
    SOCIALREC_DATA_DIR=/tmp/socialrec
EXPOSE 6066
CMD ["socialrec", "worker"]
