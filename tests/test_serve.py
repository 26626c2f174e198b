"""The HTTP endpoint on Ray Serve, deployed with `serve deploy` onto the real local Ray cluster and called
over real HTTP on 127.0.0.1: results match the library, every bad-input case has its status code, auth on
and off, and concurrent valid requests all succeed."""

from __future__ import annotations

import base64
import concurrent.futures as cf
import io
import json
import secrets
import shutil
import subprocess
import time

import numpy as np
import pytest
import requests
import yaml
from conftest import REPO, _free_port, two_page_tiff_without_width
from PIL import Image

pytest.importorskip("ray")

TOKEN = secrets.token_hex(12)


def _app(name: str, prefix: str, model: str, auth: bool, **extra) -> dict:
    small = {"num_cpus": 0.1}
    app = {"name": name, "route_prefix": prefix, "import_path": "serve.app:build_app",
            # Serve configs take only remote working_dirs; the cluster runs on this machine, so the repository goes
            # on PYTHONPATH (on Kubernetes the image holds the code)
            "runtime_env": {"env_vars": {"LANDSLIDE_API_TOKEN": TOKEN, "PYTHONPATH": str(REPO)}},
            "args": {"model": model, "device": "cpu", "max_request_bytes": 200_000, "max_image_pixels": 1_000_000,
                     "max_batch_images": 4, "auth_token_env": "LANDSLIDE_API_TOKEN" if auth else None,
                     "classifier": small, "explainer": small}}
    for key, value in extra.items():
        app["args"][key] = {**app["args"].get(key, {}), **value} if isinstance(value, dict) else value
    return app


STALL_S, CAP_S = 300, 720
# the module fixture deploys six applications before the first test: allow for the readiness cap
pytestmark = pytest.mark.timeout(CAP_S + 480)


def _replica_states(text: str) -> tuple:
    """Every application's status and every deployment's replica states, from `serve status`: when this
    changes, deployment is progressing."""
    try:
        apps = (yaml.safe_load(text) or {}).get("applications", {})
    except yaml.YAMLError:
        return ()
    return tuple((name, app.get("status"), dep, tuple(sorted((info.get("replica_states") or {}).items())))
                 for name, app in sorted(apps.items()) for dep, info in sorted((app.get("deployments") or {}).items()))


def _app_statuses(text: str) -> str:
    """One line per application (status and the end of its message) and per deployment from `serve status`."""
    try:
        apps = (yaml.safe_load(text) or {}).get("applications", {})
    except yaml.YAMLError:
        return text[-3000:]
    lines = []
    for name, app in apps.items():
        lines.append(f"{name}: {app.get('status')} {str(app.get('message', ''))[-300:]}")
        for dep, info in (app.get("deployments") or {}).items():
            lines.append(f"  {dep}: {info.get('status')} {str(info.get('message', ''))[-300:]}")
    return "\n".join(lines) or text[-3000:]


@pytest.fixture(scope="module")
def endpoint(ray_cluster, trained_run, multimodal_run, footprint_run, tmp_path_factory):
    """Applications: /secure (bearer token required), /open (no auth; with a footprint model for /v1/segment),
    /tags (a multi-modal model) and three that fail on purpose."""
    port = _free_port()
    # the same model with a recorded input GSD (1 m/px), to check gsd_m resampling
    gsd_model = tmp_path_factory.mktemp("gsd_model")
    shutil.copytree(trained_run["model_dir"], gsd_model, dirs_exist_ok=True)
    card = json.loads((gsd_model / "model_card.json").read_text())
    card["input_gsd"] = {"median_m": 1.0, "p10_m": 1.0, "p90_m": 1.0, "chips": 1, "input_size": card["input_size"]}
    (gsd_model / "model_card.json").write_text(json.dumps(card))
    config = {"proxy_location": "HeadOnly", "http_options": {"host": "127.0.0.1", "port": port},
              "applications": [
                  _app("secure", "/secure", trained_run["model_dir"], True),
                  _app("open", "/open", trained_run["model_dir"], False, footprint_model=footprint_run["model_dir"],
                       segmenter={"num_cpus": 0.1}),
                  _app("tags", "/tags", multimodal_run["model_dir"], False),
                  # no time to answer: 504
                  _app("slow", "/slow", trained_run["model_dir"], False, request_timeout_s=0.001),
                  # one explanation at a time and one waiting: the rest is refused with 503
                  # (its model records an input GSD: gsd_m requests are resampled)
                  # likewise two images being classified (each waits up to 1 s for a batch) and the rest refused
                  _app("busy", "/busy", str(gsd_model), False,
                       explainer={"max_ongoing_requests": 1, "max_queued_requests": 1},
                       classifier={"max_ongoing_requests": 1, "max_queued_requests": 1}, batch_wait_timeout_s=1.0),
                  # a model that does not exist: the application must fail to deploy, saying why
                  _app("broken", "/broken", str(tmp_path_factory.mktemp("nomodel")), False)]}
    path = tmp_path_factory.mktemp("serve") / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    serve_bin = str(REPO / ".venv" / "bin" / "serve") if (REPO / ".venv" / "bin" / "serve").exists() else "serve"
    run = dict(env=ray_cluster["env"], capture_output=True, text=True, timeout=300)
    deploy = subprocess.run([serve_bin, "deploy", str(path), "--address", ray_cluster["address"]], **run)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    base = f"http://127.0.0.1:{port}"
    status = lambda: subprocess.run([serve_bin, "status", "--address", ray_cluster["address"]], **run).stdout  # noqa: E731
    # ready when every working application answers; on a busy machine replicas start slowly (each imports torch),
    # so the deadline follows progress: it fails only after STALL_S without any replica changing state, or at
    # the cap
    started = last_progress = last_check = time.time()
    seen: tuple = ()
    while True:
        try:
            # /slow's model lookups time out by design: its ingress answering /healthz is enough
            if all(requests.get(f"{base}/{a}", timeout=5).status_code == 200
                   for a in ("secure/readyz", "open/readyz", "tags/readyz", "busy/readyz", "slow/healthz")):
                break
        except requests.RequestException:
            pass
        now = time.time()
        if now - last_check > 20:
            last_check = now
            states = _replica_states(status())
            if states != seen:
                seen, last_progress = states, now
        if now - last_progress > STALL_S or now - started > CAP_S:
            pytest.fail(f"Serve did not become ready ({now - started:.0f} s, {now - last_progress:.0f} s without "
                        "progress):\n" + _app_statuses(status()))
        time.sleep(2)
    yield {"base": base, "status": status}
    subprocess.run([serve_bin, "shutdown", "-y", "--address", ray_cluster["address"]], **run)


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def base(endpoint) -> str:
    return endpoint["base"]


def test_results_match_the_library(base, trained_run, synth_manifest):
    import pandas as pd

    from landslide.data.images import decode_image
    from landslide.inference.predictor import Predictor

    data = pd.read_csv(synth_manifest)
    paths = [f"{synth_manifest.rsplit('/', 1)[0]}/{p}" for p in data["path"][:4]]
    predictor = Predictor(trained_run["model_dir"])
    for path in paths:
        raw = open(path, "rb").read()
        expected = float(predictor.predict(predictor.prepare(decode_image(raw))[None])[0])
        r = requests.post(f"{base}/open/v1/classify", data=raw, headers={"Content-Type": "image/jpeg"}, timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["probability"] == pytest.approx(expected, abs=1e-5)
        assert body["threshold"] == pytest.approx(predictor.threshold)
        assert body["label"] == ("landslide" if expected >= predictor.threshold else "non_landslide")
        assert body["model"]["version"] == predictor.info["version"]
        multipart = requests.post(f"{base}/open/v1/classify", files={"file": ("x.jpg", raw, "image/jpeg")},
                                  timeout=60)
        assert multipart.json()["probability"] == pytest.approx(expected, abs=1e-5)
    raw = open(paths[0], "rb").read()
    ex = requests.post(f"{base}/open/v1/explain", params={"method": "gradcam++"},  # "+" must be sent as %2B
                       files={"file": ("x.jpg", raw, "image/jpeg")},
                       timeout=60)
    assert ex.status_code == 200, ex.text
    cam = ex.json()["cam"]
    overlay = Image.open(io.BytesIO(base64.b64decode(cam["overlay_png_base64"])))
    assert overlay.size == (predictor.input_size,) * 2 and cam["method"] == "gradcam++"
    assert sum(cam["attention"][k] for k in ("top", "bottom")) <= 1.0 + 1e-6
    png = requests.post(f"{base}/open/v1/explain?format=png", data=raw, headers={"Content-Type": "image/jpeg"},
                        timeout=60)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    batch = requests.post(f"{base}/open/v1/classify:batch", timeout=60,
                          files=[("files", (f"{i}.jpg", open(p, "rb").read(), "image/jpeg")) for i, p in enumerate(paths)])
    assert [b["name"] for b in batch.json()["results"]] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    card = requests.get(f"{base}/open/v1/model", timeout=30).json()
    assert card["backbone"] == "baseline_cnn" and requests.get(f"{base}/open/docs", timeout=30).status_code == 200


def test_gsd_m_resamples_to_the_models_input_gsd(base, endpoint, trained_run, synth_manifest):
    import pandas as pd

    from landslide.data.gsd import resample_to_gsd
    from landslide.data.images import decode_image
    from landslide.inference.predictor import Predictor

    path = f"{synth_manifest.rsplit('/', 1)[0]}/{pd.read_csv(synth_manifest)['path'][0]}"
    raw = open(path, "rb").read()
    predictor = Predictor(trained_run["model_dir"])
    size = predictor.input_size
    resampled = float(predictor.predict(resample_to_gsd(decode_image(raw), 0.5, 1.0, size)[None])[0])
    plain = float(predictor.predict(predictor.prepare(decode_image(raw))[None])[0])
    r = requests.post(f"{base}/busy/v1/classify", params={"gsd_m": "0.5"}, data=raw,
                      headers={"Content-Type": "image/jpeg"}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["probability"] == pytest.approx(resampled, abs=1e-5)
    assert r.json()["gsd"] == {"input_m": 0.5, "model_m": 1.0, "resampled": True}
    # a model without a recorded GSD says so and scores the image as it is
    r = requests.post(f"{base}/open/v1/classify?gsd_m=0.5", data=raw, headers={"Content-Type": "image/jpeg"},
                      timeout=60)
    assert r.json()["gsd"]["resampled"] is False and "does not record" in r.json()["gsd"]["note"]
    assert r.json()["probability"] == pytest.approx(plain, abs=1e-5)
    for bad in ("abc", "-1", "0", "inf", "1e-9"):  # the last: a factor far beyond 64 from the model's 1 m
        r = requests.post(f"{base}/busy/v1/classify", params={"gsd_m": bad}, data=raw,
                          headers={"Content-Type": "image/jpeg"}, timeout=60)
        assert r.status_code == 400 and "gsd_m=" in r.json()["error"]["message"], r.text


def test_multimodal_model_takes_optional_tags(base, multimodal_run):
    from landslide.data.images import decode_image
    from landslide.inference.predictor import Predictor

    raw = _jpeg(np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    predictor = Predictor(multimodal_run["model_dir"])
    image = predictor.prepare(decode_image(raw))[None]
    tags = {"glc_setting": "natural_slope", "glc_distance_km": 0.5}
    expected = {"with": float(predictor.predict(image, [tags])[0]), "without": float(predictor.predict(image)[0])}
    url = f"{base}/tags/v1"
    multipart = requests.post(f"{url}/classify", files={"file": ("x.jpg", raw, "image/jpeg")},
                              data={"tags": json.dumps(tags)}, timeout=60)
    assert multipart.status_code == 200, multipart.text
    assert multipart.json()["probability"] == pytest.approx(expected["with"], abs=1e-5)
    assert multipart.json()["tags_used"] == tags
    query = requests.post(f"{url}/classify", params={"tags": json.dumps(tags)}, data=raw,
                          headers={"Content-Type": "image/jpeg"}, timeout=60)
    assert query.json()["probability"] == pytest.approx(expected["with"], abs=1e-5)
    bare = requests.post(f"{url}/classify", data=raw, headers={"Content-Type": "image/jpeg"}, timeout=60)
    assert bare.json()["probability"] == pytest.approx(expected["without"], abs=1e-5)
    assert bare.json()["tags_used"] == {}
    batch = requests.post(f"{url}/classify:batch", files=[("files", ("a.jpg", raw, "image/jpeg")),
                                                          ("files", ("b.jpg", raw, "image/jpeg"))],
                          data={"tags": json.dumps(tags)}, timeout=60)
    assert batch.status_code == 200 and batch.json()["tags_used"] == tags, batch.text
    assert [r["probability"] for r in batch.json()["results"]] == pytest.approx([expected["with"]] * 2, abs=1e-5)
    explained = requests.post(f"{url}/explain", files={"file": ("x.jpg", raw, "image/jpeg")},
                              data={"tags": json.dumps(tags)}, timeout=60)
    assert explained.status_code == 200 and explained.json()["probability"] == pytest.approx(expected["with"],
                                                                                              abs=1e-5)
    for params, needle in (({"tags": "{not json"}, "not valid JSON"), ({"tags": "[1]"}, "expected a JSON object"),
                           ({"tags": '{"slope": 3}'}, "unknown tag 'slope'"),
                           ({"tags": '{"glc_distance_km": "far"}'}, "must be a number")):
        r = requests.post(f"{url}/classify", params=params, data=raw, headers={"Content-Type": "image/jpeg"},
                          timeout=60)
        assert r.status_code == 400 and needle in r.json()["error"]["message"], r.text
    image_only = requests.post(f"{base}/open/v1/classify", params={"tags": json.dumps(tags)}, data=raw,
                               headers={"Content-Type": "image/jpeg"}, timeout=60)
    assert image_only.status_code == 400 and "image-only" in image_only.json()["error"]["message"]
    assert requests.get(f"{url}/model", timeout=30).json()["inputs"] == "image + tags"


def test_bad_input_gets_precise_status_codes(base):
    url = f"{base}/open/v1"
    good = _jpeg(np.full((40, 40, 3), 120, np.uint8))
    cases = [
        ("too large", dict(data=b"\xff" * 300_000, headers={"Content-Type": "image/jpeg"}), 413),
        ("text body", dict(data=b"hello", headers={"Content-Type": "text/plain"}), 415),
        ("not an image", dict(data=b"hello", headers={"Content-Type": "image/png"}), 415),
        ("json upload", dict(files={"file": ("a.json", b"{}", "application/json")}), 415),
        ("truncated", dict(data=good[:60], headers={"Content-Type": "image/jpeg"}), 422),
        ("empty", dict(data=b"", headers={"Content-Type": "image/jpeg"}), 422),
        ("too many pixels", dict(data=_png_header_bomb(), headers={"Content-Type": "image/png"}), 422),
        ("no file field", dict(files={"other": (None, "x")}), 400),
        ("damaged tiff", dict(data=two_page_tiff_without_width()[:70], headers={"Content-Type": "image/tiff"}), 422),
    ]
    for name, kwargs, status in cases:
        r = requests.post(f"{url}/classify", timeout=60, **kwargs)
        assert r.status_code == status, (name, r.status_code, r.text)
        assert r.json()["error"]["status"] == status and r.json()["error"]["message"], name
    assert requests.post(f"{url}/explain?format=gif", data=good, headers={"Content-Type": "image/jpeg"},
                         timeout=60).status_code == 400
    assert requests.post(f"{url}/explain?method=lime", data=good, headers={"Content-Type": "image/jpeg"},
                         timeout=60).status_code == 400
    many = [("files", (f"{i}.jpg", good, "image/jpeg")) for i in range(5)]
    assert requests.post(f"{url}/classify:batch", files=many, timeout=60).status_code == 413
    mixed = requests.post(f"{url}/classify:batch", timeout=60, files=[("files", ("ok.jpg", good, "image/jpeg")),
                                                                      ("files", ("bad.jpg", good[:60], "image/jpeg"))])
    results = mixed.json()["results"]
    assert mixed.status_code == 200 and "probability" in results[0] and results[1]["error"]["status"] == 422
    # the replicas survived all of it
    assert requests.post(f"{url}/classify", data=good, headers={"Content-Type": "image/jpeg"},
                         timeout=60).status_code == 200


def _png_header_bomb() -> bytes:
    """A valid PNG declaring 2000 x 2000 pixels (4 M > the 1 M limit)."""
    buf = io.BytesIO()
    Image.new("L", (2000, 2000)).save(buf, format="PNG")
    return buf.getvalue()


def test_bearer_token(base):
    url = f"{base}/secure"
    good = _jpeg(np.full((40, 40, 3), 90, np.uint8))
    assert requests.get(f"{url}/healthz", timeout=30).status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = requests.post(f"{url}/v1/classify", data=good, headers={"Content-Type": "image/jpeg", **headers},
                          timeout=60)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), r.text
    assert requests.get(f"{url}/v1/model", timeout=30).status_code == 401
    r = requests.post(f"{url}/v1/classify", data=good, headers={"Content-Type": "image/jpeg", **AUTH}, timeout=60)
    assert r.status_code == 200 and 0 <= r.json()["probability"] <= 1


def test_concurrent_valid_requests_all_succeed(base):
    rng = np.random.default_rng(0)
    images = [_jpeg(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)) for _ in range(8)]

    def call(i: int) -> int:
        return requests.post(f"{base}/open/v1/classify", data=images[i % 8],
                             headers={"Content-Type": "image/jpeg"}, timeout=120).status_code

    with cf.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(call, range(48)))
    assert codes == [200] * 48


def test_timeouts_backpressure_and_a_broken_model(endpoint):
    base = endpoint["base"]
    good = _jpeg(np.full((40, 40, 3), 70, np.uint8))
    r = requests.post(f"{base}/slow/v1/classify", data=good, headers={"Content-Type": "image/jpeg"}, timeout=60)
    assert r.status_code == 504 and "no answer within" in r.json()["error"]["message"]

    def explain(_: int) -> requests.Response:
        return requests.post(f"{base}/busy/v1/explain?format=png", data=good,
                             headers={"Content-Type": "image/jpeg"}, timeout=120)

    with cf.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(explain, range(32)))
    codes = [a.status_code for a in answers]
    assert set(codes) <= {200, 503} and 200 in codes and 503 in codes, codes
    refused = next(a for a in answers if a.status_code == 503)
    assert refused.headers["retry-after"] == "1" and "busy" in refused.json()["error"]["message"]

    # classification queues in the ingress replica itself: two images in, the rest refused the same way
    def classify(_: int) -> requests.Response:
        return requests.post(f"{base}/busy/v1/classify", data=good, headers={"Content-Type": "image/jpeg"},
                             timeout=120)

    with cf.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(classify, range(8)))
    codes = [a.status_code for a in answers]
    assert set(codes) <= {200, 503} and 200 in codes and 503 in codes, codes
    refused = next(a for a in answers if a.status_code == 503)
    assert refused.headers.get("retry-after") == "1" and "busy" in refused.json()["error"]["message"], refused.text
    assert requests.post(f"{base}/busy/v1/classify", data=good, headers={"Content-Type": "image/jpeg"},
                         timeout=120).status_code == 200  # the limit is released as answers go out

    deadline = time.time() + 120
    while time.time() < deadline:
        status = endpoint["status"]()
        if "DEPLOY_FAILED" in status:
            break
        time.sleep(2)
    broken = yaml.safe_load(status)["applications"]["broken"]
    assert broken["status"] == "DEPLOY_FAILED" and "model card" in broken["message"], broken


def test_segment_gives_footprints_as_the_library_does(base, footprint_run):
    """POST /v1/segment: the mask and pixel polygons of the library's FootprintPredictor, GeoJSON in lon/lat with
    geodesic areas when the image's bounds and CRS are given (across the antimeridian too), and a precise 4xx for
    every bad request; 404 where no footprint model is deployed."""
    from shapely.geometry import shape

    from landslide.inference.footprints import FootprintPredictor

    rng = np.random.default_rng(3)
    image = rng.integers(40, 90, (80, 96, 3)).astype(np.uint8)
    image[20:60, 30:70] = 210
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    raw = buf.getvalue()
    predictor = FootprintPredictor(footprint_run["model_dir"], device="cpu")
    expected = predictor.footprints(predictor.prepare(image), 80, 96, gsd_m=0.5)
    url = f"{base}/open/v1/segment"
    post = lambda params=None, data=raw, ctype="image/png": requests.post(  # noqa: E731
        url, params=params or {}, data=data, headers={"Content-Type": ctype}, timeout=60)
    r = post({"gsd_m": "0.5"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == len(expected["footprints"]) > 0 and body["threshold"] == pytest.approx(predictor.threshold)
    assert body["image"]["width"] == 96 and body["image"]["height"] == 80 and body["gsd_m"] == 0.5
    for got, want in zip(body["footprints"], expected["footprints"]):
        assert shape(got["geometry"]).equals(want["pixel_geometry"]) and got["pixels"] == want["pixels"]
        assert got["area_m2"] == pytest.approx(want["pixels"] * 0.25)
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["mask_png_base64"])))) > 0
    assert mask.shape == (80, 96) and np.array_equal(mask, expected["mask"])
    png = post({"format": "png"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert int(png.headers["X-Landslide-Footprints"]) == body["count"]
    # GeoJSON: a 96 x 80 m image in UTM 48N, and one in lon/lat straddling 180°
    geo = post({"format": "geojson", "bounds": "500000,3000000,500096,3000080", "crs": "EPSG:32648"})
    assert geo.status_code == 200, geo.text
    assert geo.headers["content-type"].startswith("application/geo+json")
    features = geo.json()["features"]
    assert len(features) == body["count"]
    for f in features:
        assert f["properties"]["area_m2"] == pytest.approx(f["properties"]["pixels"], rel=0.01)
        assert 100 < shape(f["geometry"]).centroid.x < 106
    across = post({"format": "geojson", "bounds": "179.9995,-16.0005,-179.9995,-15.9995", "crs": "EPSG:4326"})
    assert across.status_code == 200, across.text
    lons = [x for f in across.json()["features"] for x, _ in shape(f["geometry"]).envelope.exterior.coords]
    assert lons and min(lons) >= -180 and max(lons) <= 180
    for params, needle in (({"format": "svg"}, "format="), ({"bounds": "0,0,1,1"}, "bounds and crs go together"),
                           ({"bounds": "0,0,1", "crs": "EPSG:4326"}, "four numbers"),
                           ({"bounds": "0,0,1,1", "crs": "EPSG:999999"}, "crs="),
                           ({"bounds": "0,95,1,96", "crs": "EPSG:4326"}, "latitudes"),
                           ({"bounds": "0,1,1,0", "crs": "EPSG:32648"}, "below"),
                           ({"format": "geojson"}, "needs the image's bounds"),
                           ({"gsd_m": "-2"}, "gsd_m="), ({"simplify_m": "2"}, "need the image's bounds"),
                           ({"gsd_m": "1", "bounds": "0,0,1,1", "crs": "EPSG:32648"}, "give one")):
        r = post(params)
        assert r.status_code == 400 and needle in r.json()["error"]["message"], (params, r.text)
    assert post(data=b"hello", ctype="text/plain").status_code == 415
    assert post(data=raw[:60]).status_code == 422
    assert post(data=b"\xff" * 300_000, ctype="image/jpeg").status_code == 413
    none = requests.post(f"{base}/secure/v1/segment", data=raw, headers={"Content-Type": "image/png", **AUTH},
                         timeout=60)
    assert none.status_code == 404 and "footprint_model" in none.json()["error"]["message"]
    assert requests.post(f"{base}/secure/v1/segment", data=raw, headers={"Content-Type": "image/png"},
                         timeout=60).status_code == 401
