# The edgefleet image: fleet service (ingest + OTA manager), dashboard and simulator.
# Training needs TensorFlow and is left out unless WITH_TRAINING=1.
FROM python:3.11-slim-bookworm
ARG WITH_TRAINING=0
RUN apt-get update \
 && apt-get install -y --no-install-recommends mosquitto \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements*.txt pyproject.toml ./
RUN pip install --no-cache-dir -r requirements-service.txt \
 && if [ "$WITH_TRAINING" = "1" ]; then pip install --no-cache-dir -r requirements.txt; fi
COPY edgefleet ./edgefleet
COPY device_sim ./device_sim
COPY dashboards ./dashboards
COPY docs ./docs
RUN pip install --no-cache-dir --no-deps -e . && useradd --system --uid 1000 edgefleet \
 && mkdir -p /data && chown edgefleet /data
USER edgefleet
# numba's compiled engine kernels: cached where the service user can write
ENV NUMBA_CACHE_DIR=/tmp/numba-cache
VOLUME ["/data"]
ENTRYPOINT ["edgefleet"]
CMD ["--help"]
