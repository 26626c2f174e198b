# The landslide image for KubeRay: Ray head, workers and the RayJob submitter all run it.
#
#   docker build -t REGISTRY/landslide:0.1.0 .        # tag = the chart's appVersion (charts/landslide/Chart.yaml)
#   docker push REGISTRY/landslide:0.1.0
#
# Everything Python comes from requirements.lock with hashes checked, so the image has exactly the Python,
# torch and Ray versions the tests ran with (tests/test_chart.py checks the three agree with the chart).
# One image serves CPU and GPU nodes: the locked torch wheel carries its CUDA libraries and runs on the CPU
# when no GPU is visible; GPU nodes need only the NVIDIA device plugin.

# Python minor version of the lock file (`make lock` resolves for 3.11).
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first: this layer is rebuilt only when the lock changes.
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY landslide ./landslide
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation . \
    && /opt/venv/bin/python -c "import landslide, ray, torch; print('landslide', landslide.__version__, 'ray', ray.__version__, 'torch', torch.__version__)"

FROM python:${PYTHON_VERSION}-slim-bookworm
# wget: KubeRay's injected liveness/readiness probes run `bash -c "wget ... | grep success"` (bash is in the base).
# libgl1, libglib2.0-0, libxcb1: cv2 (opencv-python, required by grad-cam and deep-sort-realtime) links them even
# for headless use; without them `import landslide.explain` fails in a slim image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget libgl1 libglib2.0-0 libxcb1 \
    && rm -rf /var/lib/apt/lists/*
# The same numeric user the chart runs pods as (podSecurityContext.runAsUser).
RUN groupadd --gid 1000 ray && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash ray
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The Ray entry points are not part of the installed library (it imports no Ray); they are run from /app.
COPY ray_jobs ./ray_jobs
COPY serve ./serve
COPY configs ./configs
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 1000:1000
CMD ["landslide", "--help"]
