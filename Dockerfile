# One image for every orderflow service (ingest, detect, simulate-polygon, risk-manager, watch).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system orderflow && useradd --system --gid orderflow --home-dir /app --shell /usr/sbin/nologin orderflow
WORKDIR /app

COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY orderflow_client ./orderflow_client
RUN pip install . && mkdir -p /app/logs/order_flow /app/captures && chown -R orderflow:orderflow /app

USER orderflow
# No secret is baked in: POLYGON_API_KEY and REDIS_URL come from the environment at run time.
ENTRYPOINT ["orderflow"]
CMD ["--help"]
