#!/usr/bin/env bash
# Smoke-test a built image the way the Helm chart runs it: uid 1000, read-only root filesystem, all
# capabilities dropped, no privilege escalation, an emptyDir-like /tmp and /dev/shm, Ray token auth on.
#
#   scripts/check_image.sh landslide:0.1.0 [DEMO_OUTPUT]     # DEMO_OUTPUT: a `landslide demo --out` folder
#
# Checks, in one container:
#   1. the library, the Ray entry points and the Serve app import; versions are printed;
#   2. `ray start --head` works and KubeRay's injected probe commands (bash + wget) succeed;
#   3. (with DEMO_OUTPUT, read-only) the chart's sweep and train entry points, submitted with `ray job submit`
#      as a RayJob does: the sweep covers the demo region with the demo model, training runs a few steps on
#      the demo chips and saves a model; then the Serve app answers /readyz and /v1/classify (bearer token).
set -euo pipefail
image=${1:?usage: check_image.sh IMAGE [DEMO_OUTPUT]}
demo=${2:-}
mounts=()
if [ -n "$demo" ]; then
  mounts=(-v "$(cd "$demo" && pwd):/data:ro")
fi

docker run --rm --user 1000:1000 --read-only --cap-drop ALL --security-opt no-new-privileges \
  --tmpfs /tmp:rw,exec,size=4g --shm-size 1g -e HOME=/tmp/home -e XDG_CACHE_HOME=/tmp/cache \
  -e MPLCONFIGDIR=/tmp/cache/matplotlib -e RAY_AUTH_MODE=token -e RAY_AUTH_TOKEN=check-image-token \
  -e LANDSLIDE_API_TOKEN=check-api-token -e DEMO="${demo:+/data}" "${mounts[@]}" "$image" bash -euo pipefail -c '
step() { printf "\n== %s\n" "$*"; }
step "1. imports and versions"
python - <<PY
import sys, landslide, ray, torch, ray_jobs.train, ray_jobs.sweep, serve.app
print("python", sys.version.split()[0], "| landslide", landslide.__version__, "| ray", ray.__version__,
      "| torch", torch.__version__, "| uid", __import__("os").getuid())
PY
python -m ray_jobs.train --help > /dev/null && python -m ray_jobs.sweep --help > /dev/null && echo "entry points: ok"
if touch /app/probe 2>/dev/null; then echo "root filesystem is writable"; exit 1; fi

step "2. ray start --head and the KubeRay probe commands"
ray start --head --num-cpus 2 --dashboard-host 0.0.0.0 --disable-usage-stats > /tmp/ray-start.log 2>&1 \
  || { cat /tmp/ray-start.log; exit 1; }
for i in $(seq 1 30); do
  wget -T 2 -q -O- http://localhost:52365/api/local_raylet_healthz | grep -q success \
    && wget -T 2 -q -O- http://localhost:8265/api/gcs_healthz | grep -q success && break
  sleep 2
done
wget -T 2 -q -O- http://localhost:52365/api/local_raylet_healthz | grep success
wget -T 2 -q -O- http://localhost:8265/api/gcs_healthz | grep success

if [ -n "$DEMO" ]; then
  step "3a. the sweep RayJob entrypoint (ray job submit, config as the chart mounts it)"
  mkdir -p /tmp/etc-landslide
  cat > /tmp/etc-landslide/config.yaml <<YAML
name: image-check
model: $DEMO/run/model
tiles: {source: $DEMO/region/xyz, zoom: 19}
output: /tmp/sweep-out
ray: {inference_actors: 1, cpus_per_actor: 1, read_cpus: 1}
YAML
  ray job submit --address http://127.0.0.1:8265 --submission-id image-check -- \
    python -m ray_jobs.sweep --config /tmp/etc-landslide/config.yaml 2>&1 | tail -n 4
  python - <<PY
import json
s = json.load(open("/tmp/sweep-out/summary.json"))
print("sweep summary:", {k: s[k] for k in ("tiles_in", "tiles_ok", "tiles_failed", "positives") if k in s})
assert s["tiles_ok"] > 0 and not s["tiles_failed"], s
PY

  step "3b. the train RayJob entrypoint (Ray Train, 1 worker, a few steps on the demo chips)"
  cat > /tmp/etc-landslide/config.yaml <<YAML
name: image-check
output_dir: /tmp/train-out
data: {train: $DEMO/data/manifest.csv, split: {method: group}}
model: {backbone: tf_efficientnet_lite0, pretrained: offline, image_size: 64, freeze: {strategy: head}}
train: {epochs: 1, batch_size: 16, max_steps_per_epoch: 2, progress: false}
eval: {bootstrap: 50, cam_max_images: 4, gallery_size: 2}
ray: {num_workers: 1, resources_per_worker: {CPU: 1}}
YAML
  ray job submit --address http://127.0.0.1:8265 --submission-id image-check-train -- \
    python -m ray_jobs.train --config /tmp/etc-landslide/config.yaml 2>&1 | tail -n 3
  ls /tmp/train-out/model/model.safetensors /tmp/train-out/model/model_card.json

  step "3c. the Serve app (serveConfigV2 as the chart renders it), bearer token on"
  cat > /tmp/serve.yaml <<YAML
proxy_location: EveryNode
http_options: {host: 0.0.0.0, port: 8000, request_timeout_s: 60}
applications:
  - name: landslide
    route_prefix: /
    import_path: serve.app:build_app
    args:
      model: $DEMO/run/model
      auth_token_env: LANDSLIDE_API_TOKEN
      classifier: {num_cpus: 0.5}
      explainer: {num_cpus: 0.25}
      ingress: {num_cpus: 0.1}
YAML
  serve deploy /tmp/serve.yaml --address http://127.0.0.1:8265
  for i in $(seq 1 60); do
    wget -T 2 -q -O- http://127.0.0.1:8000/readyz > /tmp/readyz 2>/dev/null && break
    sleep 2
  done
  echo "readyz: $(cat /tmp/readyz)"
  tile=$(find "$DEMO/region/xyz" -name "*.jpg" | head -n 1)
  python - "$tile" <<PY
import json, sys, urllib.request, urllib.error
body = open(sys.argv[1], "rb").read()
def call(token):
    req = urllib.request.Request("http://127.0.0.1:8000/v1/classify", data=body,
                                 headers={"Content-Type": "image/jpeg", **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)
status, body_ok = call("check-api-token")
print("classify with token:", status, body_ok)
assert status == 200 and body_ok["label"] in ("landslide", "non_landslide"), body_ok
status, _ = call(None)
print("classify without token:", status)
assert status == 401
PY
fi
ray stop --force > /dev/null 2>&1 || true
step "image check passed"
'
