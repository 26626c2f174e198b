"""The HTTP endpoint on Ray Serve: classify uploaded images and, on request, explain them with Grad-CAM.

    serve run serve/config.yaml                        # one machine
    serve deploy serve/config.yaml --address http://HEAD:8265   # a cluster (KubeRay: a RayService)

Two deployments: ``Api`` (FastAPI ingress: validation, auth, errors, and classification itself, with dynamic
request batching over the library's ``Predictor``: a classify request makes one hop, proxy -> Api, and the
replica that decodes an upload batches it) and ``Explainer`` (Grad-CAM in its own replicas: its hooks are not
safe under concurrent requests, and explanations must not slow classification down); with a
``footprint_model``, a third, ``Segmenter``, answers ``POST /v1/segment`` (footprints: mask PNG and polygons in
pixel coordinates, or GeoJSON in lon/lat when the request gives the image's ``bounds`` and ``crs``). Bad input never
yields a 500: 400 bad parameters, 401 missing/wrong token, 413 too large, 415 not an image, 422 undecodable
or too many pixels, 503 + Retry-After when the queues are full, 504 past the request time-out.

``gsd_m`` (query, metres per pixel of the upload) resamples the image to the model's input GSD first (the response's
``gsd`` says what was done). A multi-modal model takes optional tags (on a batch: for every image of it): a JSON object in the multipart
field ``tags`` or the query parameter ``tags`` (e.g. ``{"glc_setting": "above_road"}``); tags it was not trained on are a 400, absent tags
are unknown, as in training.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import os
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle
from starlette.datastructures import UploadFile

from landslide import __version__
from landslide.config import ServeAppConfig, ServeDeploymentConfig, parse_config
from landslide.data.gsd import MAX_RESAMPLING, resample_to_gsd
from landslide.data.images import UNRECOGNISED_FORMAT, decode_image
from landslide.data.tags import TagSchema
from landslide.errors import ConfigError, ImageError
from landslide.explain.gradcam import CAM_METHODS
from landslide.inference.footprints import FootprintPredictor
from landslide.inference.predictor import Predictor, prepare_image
from landslide.models.checkpoint import read_card

RETRY_AFTER_S = 1
INLINE_DECODE_BYTES = 256 * 1024
INGRESS_HEADROOM = 16  # requests an ingress replica takes beyond its classify limit (explain, segment, health)
IMAGE_TYPES = ("image/", "application/octet-stream")


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status, headers=headers)


# ------------------------------------------------------------------------------------------ model replicas
@serve.deployment
class Explainer:
    """Grad-CAM overlays; one request at a time per replica (hooks are per model)."""

    def __init__(self, cfg: dict):
        settings = ServeAppConfig.model_validate(cfg)
        self.predictor = Predictor(settings.model, settings.device, settings.threshold, tta=settings.tta)

    def __call__(self, image: np.ndarray, method: str, tags: dict | None = None) -> dict:
        probs, cams = self.predictor.explain(image[None], method, [tags] if tags else None)
        return {"probability": float(probs[0]), "png": self.predictor.overlay_png(image, cams[0]),
                "attention": self.predictor.attention(cams[0])}


@serve.deployment
class Segmenter:
    """Footprints with a footprint model: predicted at the model's input size, brought back to the upload's
    size and traced into polygons here, so only the small prepared image and the answer cross processes."""

    def __init__(self, cfg: dict):
        settings = ServeAppConfig.model_validate(cfg)
        self.predictor = FootprintPredictor(settings.footprint_model, settings.device, settings.footprint_threshold)
        self.max_footprints = settings.max_footprints

    def __call__(self, image: np.ndarray, height: int, width: int, gsd_m: float | None, geo: dict | None,
                 simplify_m: float, min_area_m2: float) -> dict:
        from shapely.geometry import mapping

        from landslide.inventory.geo import geojson_geometry

        transform = None
        if geo:
            from rasterio.transform import from_bounds

            transform = from_bounds(*geo["bounds"], width, height)
        out = self.predictor.footprints(image, height, width, gsd_m, transform, geo and geo["crs"], simplify_m,
                                        min_area_m2, self.max_footprints)
        footprints = []
        for f in out["footprints"]:
            item = {"geometry": mapping(f["pixel_geometry"]), "pixels": f["pixels"],
                    "mean_probability": f["mean_probability"], "max_probability": f["max_probability"]}
            if "area_m2" in f:
                item["area_m2"] = f["area_m2"]
            if "geometry_wgs84" in f:  # RFC 7946: counter-clockwise exteriors, coordinates rounded to ~1 cm
                item["geometry_wgs84"] = geojson_geometry(f["geometry_wgs84"])
            footprints.append(item)
        return {"footprints": footprints, "truncated": out["truncated"], "landslide_share": out["landslide_share"],
                "threshold": out["threshold"], "mask_png": self.predictor.mask_png(out["mask"]),
                "model": self.predictor.info}


# ------------------------------------------------------------------------------------------ HTTP ingress
app = FastAPI(title="landslide", version=__version__,
              description="Landslide classification of aerial/satellite images, with Grad-CAM explanations.")


# registered before @serve.ingress, which captures the app as it is then
@app.exception_handler(HttpError)
async def _http_error(request: Request, exc: HttpError) -> JSONResponse:
    return error_response(exc.status, exc.message, exc.headers)


@app.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    return error_response(500, f"internal error ({type(exc).__name__}); the request was not processed")


@serve.deployment
@serve.ingress(app)
class Api:
    """The HTTP routes, and the classifier: concurrent ``/v1/classify`` requests share one forward pass
    (``@serve.batch``); torch takes its thread count from the OMP_NUM_THREADS Ray sets for the replica's CPUs.

    The forward pass runs in the event loop, as Ray's batching guide has it: in a worker thread it would
    overlap with the loop's request handling, but a timm model's forward is Python module by module and
    needs the GIL between kernels, so the two threads contend for it; measured on 2 cores that cost 20-35 %
    of the throughput (docs/benchmarks.md)."""

    def __init__(self, explainer: DeploymentHandle, cfg: dict, segmenter: DeploymentHandle | None = None,
                 footprint_input_size: int | None = None):
        self.cfg = ServeAppConfig.model_validate(cfg)
        self.explainer, self.segmenter = explainer, segmenter
        self.footprint_input_size = footprint_input_size
        self.predictor = Predictor(self.cfg.model, self.cfg.device, self.cfg.threshold, tta=self.cfg.tta)
        self.predict_batch.set_max_batch_size(self.cfg.max_batch_size)
        self.predict_batch.set_batch_wait_timeout_s(self.cfg.batch_wait_timeout_s)
        # at most this many images being classified or waiting for a batch in this replica; the rest are refused
        # at once with our 503 + Retry-After (as the explainer's queue is), before Ray Serve's own limits apply
        queued = self.cfg.classifier.max_queued_requests
        self._admit_limit = None if queued < 0 else self.cfg.classifier.max_ongoing_requests + queued
        self._admitted = 0
        self.token = None
        if self.cfg.auth_token_env:
            self.token = os.environ.get(self.cfg.auth_token_env, "")
            if not self.token:
                raise ConfigError(f"auth_token_env: environment variable {self.cfg.auth_token_env} is not set or "
                                  "empty; set it (e.g. from a Kubernetes Secret) or unset auth_token_env")
        self.input_size = self.predictor.input_size
        self.input_gsd_m = (self.predictor.card.input_gsd or {}).get("median_m")
        self._model = {"info": self.predictor.info, "card": self.predictor.card.to_json()}
        card_tags = self.predictor.card.tags
        self._schema = TagSchema.from_json(card_tags.tag_schema) if card_tags is not None else None

    # -- helpers
    def _authorize(self, request: Request) -> None:
        if self.token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            raise HttpError(401, "missing or wrong bearer token (Authorization: Bearer <token>)",
                            {"WWW-Authenticate": 'Bearer realm="landslide"'})

    def _check_declared_length(self, request: Request) -> None:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.cfg.max_request_bytes:
            raise HttpError(413, f"request body of {declared} bytes exceeds the limit of "
                                 f"{self.cfg.max_request_bytes} bytes")

    async def _body(self, request: Request) -> bytes:
        limit = self.cfg.max_request_bytes
        self._check_declared_length(request)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HttpError(413, f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _images(self, request: Request, many: bool) -> list[tuple[str, bytes]]:
        """(name, bytes) of the uploaded image(s): multipart fields ``file``/``image``/``files``, or a raw body.
        A multipart text field ``tags`` is kept in ``request.state.tags``."""
        request.state.tags = None
        ctype = request.headers.get("content-type", "").lower()
        if ctype.startswith("multipart/form-data"):
            self._check_declared_length(request)
            try:
                form = await request.form(max_files=self.cfg.max_batch_images + 1, max_fields=16,
                                          max_part_size=self.cfg.max_request_bytes)
            except Exception as exc:
                raise HttpError(400, f"malformed multipart body ({exc})") from None
            files = [(key, v) for key, v in form.multi_items() if isinstance(v, UploadFile)]
            if isinstance(form.get("tags"), str):
                request.state.tags = form.get("tags")
            if not files:
                raise HttpError(400, "no file in the multipart body (use the field 'file', or 'files' for a batch)")
            out = []
            for key, upload in files:
                data = await upload.read()
                if upload.content_type and not upload.content_type.lower().startswith(IMAGE_TYPES):
                    raise HttpError(415, f"{upload.filename or key}: unsupported media type {upload.content_type!r}; "
                                         "send an image")
                out.append((upload.filename or key, data))
            if not many and len(out) > 1:
                raise HttpError(400, "one image per request here; use /v1/classify:batch for several")
            if len(out) > self.cfg.max_batch_images:
                raise HttpError(413, f"{len(out)} images exceed the limit of {self.cfg.max_batch_images} per request")
            return out
        if ctype and not ctype.startswith(IMAGE_TYPES):
            raise HttpError(415, f"unsupported media type {ctype!r}; send an image body (image/*) or "
                                 "multipart/form-data")
        if many:
            raise HttpError(400, "a batch needs multipart/form-data with one 'files' field per image")
        return [("body", await self._body(request))]

    def _decode(self, name: str, data: bytes) -> np.ndarray:
        try:
            return decode_image(data, name, max_pixels=self.cfg.max_image_pixels)
        except ImageError as exc:
            status = 415 if exc.reason == UNRECOGNISED_FORMAT else 422
            raise HttpError(status, f"{name}: {exc.reason}") from None

    def _prepare(self, name: str, data: bytes, gsd_m: float | None = None) -> np.ndarray:
        image = self._decode(name, data)
        if gsd_m is not None and self.input_gsd_m:
            return resample_to_gsd(image, gsd_m, self.input_gsd_m, self.input_size)
        return prepare_image(image, self.input_size)

    def _gsd(self, raw: str | None) -> tuple[float | None, dict | None]:
        """The request's ``gsd_m`` (m/px; 400 when not a positive number) and what was done with it: resampled
        to the model's input GSD, or not (the model does not record one: said in the response)."""
        if raw is None:
            return None, None
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not (0 < value < float("inf")):
            raise HttpError(400, f"gsd_m={raw!r}: give the image's ground sampling distance in metres per pixel, "
                                 "a positive number")
        if not self.input_gsd_m:
            return value, {"input_m": value, "model_m": None, "resampled": False,
                           "note": "the model does not record the GSD it was trained at; the image was not resampled"}
        if not 1 / MAX_RESAMPLING <= value / self.input_gsd_m <= MAX_RESAMPLING:
            raise HttpError(400, f"gsd_m={raw!r}: resampling to the model's {self.input_gsd_m:g} m/px would be a "
                                 f"factor beyond {MAX_RESAMPLING}; check the units (metres per pixel)")
        return value, {"input_m": value, "model_m": self.input_gsd_m, "resampled": True}

    @staticmethod
    def _number(name: str, raw: str | None, positive: bool = False) -> float | None:
        """A query parameter that must be a finite number, not negative (positive: above 0); 400 otherwise."""
        if raw is None:
            return None
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not (value > 0 if positive else value >= 0) or value == float("inf"):
            raise HttpError(400, f"{name}={raw!r}: expected a {'positive' if positive else 'non-negative'} number")
        return value

    @staticmethod
    def _georef(bounds: str | None, crs: str | None) -> dict | None:
        """The image's ``bounds`` (minx,miny,maxx,maxy in ``crs`` units, outer edges of the corner pixels) and
        ``crs`` (e.g. EPSG:32648): both or neither, 400 when malformed. In a geographic CRS a minx above maxx
        means the image crosses the antimeridian."""
        if bounds is None and crs is None:
            return None
        if bounds is None or crs is None:
            raise HttpError(400, "bounds and crs go together: give the image's bounds (minx,miny,maxx,maxy) and its "
                                 "CRS (e.g. EPSG:32648), or neither")
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            parsed = CRS.from_user_input(crs)
        except CRSError:
            raise HttpError(400, f"crs={crs!r}: not a coordinate reference system pyproj knows "
                                 "(give e.g. EPSG:4326 or EPSG:32648)") from None
        try:
            values = [float(v) for v in bounds.split(",")]
        except ValueError:
            values = []
        if len(values) != 4 or not all(np.isfinite(values)):
            raise HttpError(400, f"bounds={bounds!r}: expected four numbers minx,miny,maxx,maxy")
        minx, miny, maxx, maxy = values
        if parsed.is_geographic:
            if not (-90 <= miny < maxy <= 90):
                raise HttpError(400, f"bounds={bounds!r}: latitudes must rise from miny to maxy within [-90, 90]")
            if not (-180 <= minx <= 180 and -180 <= maxx <= 180):
                raise HttpError(400, f"bounds={bounds!r}: longitudes must lie in [-180, 180]")
            if minx > maxx:  # across the antimeridian: continue east past 180
                maxx += 360
        if not (minx < maxx and miny < maxy):
            raise HttpError(400, f"bounds={bounds!r}: minx must be below maxx and miny below maxy")
        return {"bounds": (minx, miny, maxx, maxy), "crs": parsed.to_string()}

    async def _call(self, handle: DeploymentHandle, *args) -> Any:
        try:
            return await asyncio.wait_for(handle.remote(*args), timeout=self.cfg.request_timeout_s)
        except BackPressureError:
            raise HttpError(503, "busy: too many requests queued; retry shortly",
                            {"Retry-After": str(RETRY_AFTER_S)}) from None
        except asyncio.TimeoutError:
            raise HttpError(504, f"no answer within {self.cfg.request_timeout_s:g} s") from None

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def predict_batch(self, items: list[tuple[np.ndarray, dict | None]]) -> list[float]:
        tags = [t for _, t in items]
        images = np.stack([image for image, _ in items])
        probs = self.predictor.predict(images, tags if any(tags) else None)
        return [float(p) for p in probs]

    def _admit(self) -> None:
        """Count one image in for classification; 503 + Retry-After when the replica already holds
        ``classifier.max_ongoing_requests + max_queued_requests`` of them."""
        if self._admit_limit is not None and self._admitted >= self._admit_limit:
            raise HttpError(503, "busy: too many images waiting to be classified; retry shortly",
                            {"Retry-After": str(RETRY_AFTER_S)})
        self._admitted += 1

    async def _classify(self, name: str, data: bytes, gsd_m: float | None, tags: dict | None) -> float:
        """The landslide probability of one uploaded image: admitted (:meth:`_admit`), decoded and prepared,
        then batched with concurrent requests; 504 past the request time-out."""
        self._admit()
        try:
            image = await self._prepared(name, data, gsd_m)
            return await asyncio.wait_for(self.predict_batch((image, tags)), timeout=self.cfg.request_timeout_s)
        except asyncio.TimeoutError:
            raise HttpError(504, f"no answer within {self.cfg.request_timeout_s:g} s") from None
        finally:
            self._admitted -= 1

    async def _prepared(self, name: str, data: bytes, gsd_m: float | None = None) -> np.ndarray:
        """:meth:`_prepare`: in the event loop for an upload of up to ``INLINE_DECODE_BYTES`` (a chip decodes in
        about a millisecond, less than a thread hand-off costs under load), in a worker thread above that, so a
        large upload's decode does not hold up the other requests."""
        if len(data) <= INLINE_DECODE_BYTES:
            return self._prepare(name, data, gsd_m)
        return await asyncio.to_thread(self._prepare, name, data, gsd_m)

    async def _tags(self, request: Request, query: str | None) -> dict | None:
        """The request's tags (JSON object in the multipart field or the ``tags`` query parameter), checked
        against the model's tag schema; None when the request sends none."""
        raw = request.state.tags if request.state.tags is not None else query
        if raw is None or not raw.strip():
            return None
        try:
            tags = json.loads(raw)
        except ValueError as exc:
            raise HttpError(400, f"tags: not valid JSON ({exc})") from None
        if not isinstance(tags, dict):
            raise HttpError(400, f"tags: expected a JSON object of tag names to values, got {type(tags).__name__}")
        if self._schema is None:
            raise HttpError(400, "tags: this model is image-only and takes no tags")
        try:
            self._schema.encode_records([tags])
        except ConfigError as exc:
            raise HttpError(400, f"tags: {exc}") from None
        return tags or None

    def _result(self, probability: float, info: dict) -> dict:
        threshold = info["info"]["threshold"]
        return {"label": "landslide" if probability >= threshold else "non_landslide",
                "probability": probability, "threshold": threshold,
                "model": {"name": info["info"]["name"], "version": info["info"]["version"]}}

    # -- routes
    @app.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(self):
        return {"status": "ready", "model": self._model["info"]}  # the replica holds the loaded model

    @app.get("/v1/model")
    async def model(self, request: Request):
        self._authorize(request)
        return self._model["card"]

    @app.post("/v1/classify")
    async def classify(self, request: Request, tags: str | None = None, gsd_m: str | None = None):
        self._authorize(request)
        (name, data), = await self._images(request, many=False)
        gsd, gsd_info = self._gsd(gsd_m)
        given = await self._tags(request, tags)
        result = self._result(await self._classify(name, data, gsd, given), self._model)
        return {**result, "tags_used": given or {}, **({"gsd": gsd_info} if gsd_info else {})}

    @app.post("/v1/classify:batch")
    async def classify_batch(self, request: Request, tags: str | None = None, gsd_m: str | None = None):
        """Several images; ``tags`` (multipart field or query parameter) and ``gsd_m`` apply to every image."""
        self._authorize(request)
        uploads = await self._images(request, many=True)
        gsd, gsd_info = self._gsd(gsd_m)
        given = await self._tags(request, tags)

        async def one(name: str, data: bytes) -> dict:
            try:
                return {"name": name, **self._result(
                    await self._classify(name, data, gsd, given), self._model)}
            except HttpError as exc:
                if exc.status in (503, 504):
                    raise
                return {"name": name, "error": {"status": exc.status, "message": exc.message}}

        return {"results": await asyncio.gather(*(one(n, d) for n, d in uploads)), "tags_used": given or {},
                **({"gsd": gsd_info} if gsd_info else {})}

    @app.post("/v1/explain")
    async def explain(self, request: Request, format: str = "json", method: str = "gradcam",
                      tags: str | None = None, gsd_m: str | None = None):
        self._authorize(request)
        if format not in ("json", "png"):
            raise HttpError(400, f"format={format!r}: use json or png")
        if method not in self.cfg.cam_methods or method not in CAM_METHODS:
            raise HttpError(400, f"method={method!r}: use one of {self.cfg.cam_methods}")
        (name, data), = await self._images(request, many=False)
        gsd, gsd_info = self._gsd(gsd_m)
        given = await self._tags(request, tags)
        image = await self._prepared(name, data, gsd)
        out = await self._call(self.explainer, image, method, given)
        result = self._result(out["probability"], self._model)
        if format == "png":
            return Response(out["png"], media_type="image/png",
                            headers={"X-Landslide-Label": result["label"],
                                     "X-Landslide-Probability": f"{result['probability']:.6f}"})
        return {**result, "cam": {"method": method, "attention": out["attention"],
                                  "overlay_png_base64": base64.b64encode(out["png"]).decode()},
                **({"gsd": gsd_info} if gsd_info else {})}


    @app.post("/v1/segment")
    async def segment(self, request: Request, format: str = "json", gsd_m: str | None = None,
                      bounds: str | None = None, crs: str | None = None, simplify_m: str | None = None,
                      min_area_m2: str | None = None):
        """Footprints of one image (scored as one chip at the footprint model's input size): ``json`` (polygons
        in the image's pixel coordinates, areas in m² with ``gsd_m`` or ``bounds`` + ``crs``, lon/lat polygons
        with ``bounds`` + ``crs``, the mask as a base64 PNG), ``png`` (the mask: 255 landslide) or ``geojson``
        (a FeatureCollection in lon/lat; needs ``bounds`` and ``crs``)."""
        self._authorize(request)
        if self.segmenter is None:
            raise HttpError(404, "this endpoint serves no footprint model (set footprint_model in the application's "
                                 "args to answer /v1/segment)")
        if format not in ("json", "png", "geojson"):
            raise HttpError(400, f"format={format!r}: use json, png or geojson")
        geo = self._georef(bounds, crs)
        gsd = self._number("gsd_m", gsd_m, positive=True)
        if geo and gsd is not None:
            raise HttpError(400, "gsd_m and bounds/crs both give the image's scale: give one of them")
        if format == "geojson" and geo is None:
            raise HttpError(400, "format=geojson needs the image's bounds and crs (GeoJSON is in lon/lat)")
        simplify, min_area = self._number("simplify_m", simplify_m) or 0.0, self._number("min_area_m2", min_area_m2) or 0.0
        if (simplify or min_area) and geo is None:
            raise HttpError(400, "simplify_m and min_area_m2 are in metres: they need the image's bounds and crs")
        (name, data), = await self._images(request, many=False)
        def decode() -> tuple[tuple[int, int], np.ndarray]:  # the upload's size, and the model's input
            image = self._decode(name, data)
            return image.shape[:2], prepare_image(image, self.footprint_input_size)

        (height, width), small = await asyncio.to_thread(decode)
        out = await self._call(self.segmenter, small, height, width, gsd, geo, simplify, min_area)
        model = {"name": out["model"]["name"], "version": out["model"]["version"]}
        if format == "png":
            return Response(out["mask_png"], media_type="image/png",
                            headers={"X-Landslide-Footprints": str(len(out["footprints"])),
                                     "X-Landslide-Share": f"{out['landslide_share']:.6f}"})
        if format == "geojson":
            features = [{"type": "Feature", "geometry": f["geometry_wgs84"],
                         "properties": {"area_m2": f["area_m2"], "pixels": f["pixels"],
                                        "mean_probability": f["mean_probability"],
                                        "max_probability": f["max_probability"], **{f"model_{k}": v
                                                                                   for k, v in model.items()}}}
                        for f in out["footprints"]]
            return JSONResponse({"type": "FeatureCollection", "features": features, "truncated": out["truncated"],
                                 "threshold": out["threshold"], "model": model},
                                media_type="application/geo+json")
        return {"footprints": out["footprints"], "count": len(out["footprints"]), "truncated": out["truncated"],
                "landslide_share": out["landslide_share"], "threshold": out["threshold"],
                "image": {"width": width, "height": height, "coordinates": "pixels: x right, y down from the "
                                                                           "top-left corner"},
                "model": model, "mask_png_base64": base64.b64encode(out["mask_png"]).decode(),
                **({"crs": geo["crs"], "bounds": list(geo["bounds"])} if geo else {}),
                **({"gsd_m": gsd} if gsd is not None else {})}


# ------------------------------------------------------------------------------------------ application
def _options(d: ServeDeploymentConfig) -> dict:
    opts: dict[str, Any] = {"ray_actor_options": {"num_cpus": d.num_cpus, "num_gpus": d.num_gpus},
                            "max_ongoing_requests": d.max_ongoing_requests,
                            "max_queued_requests": d.max_queued_requests}
    if d.autoscaling:
        opts["autoscaling_config"] = d.autoscaling
    else:
        opts["num_replicas"] = d.num_replicas
    return opts


def build_app(args: dict) -> serve.Application:
    """Serve's application builder (``import_path: serve.app:build_app``); ``args`` is a ServeAppConfig.
    The model card is checked here, so a missing or broken model fails ``serve run``/``deploy`` at once."""
    cfg = parse_config(dict(args), "serve application args", schema=ServeAppConfig)
    card = read_card(cfg.model)
    if card.task != "classification":
        raise ConfigError(f"{cfg.model} holds a {card.task} (footprint) model; the endpoint classifies chips and "
                          "needs a classification model")
    raw = cfg.model_dump(mode="json")
    explainer = Explainer.options(**_options(cfg.explainer)).bind(raw)
    segmenter, footprint_size = None, None
    if cfg.footprint_model:
        footprints = read_card(cfg.footprint_model)
        if footprints.task != "segmentation":
            raise ConfigError(f"footprint_model: {cfg.footprint_model} holds a {footprints.task} model; /v1/segment "
                              "needs a footprint (segmentation) model")
        segmenter = Segmenter.options(**_options(cfg.segmenter)).bind(raw)
        footprint_size = footprints.input_size
    api = _options(cfg.classifier)
    if cfg.classifier.max_queued_requests >= 0:
        # the replica queues classify requests itself (our 503 + Retry-After past the limit: Api._admit), so Serve
        # lets that many in, plus room for explain, segment and health requests; Serve's own queue counts requests
        # waiting to be routed, which a burst fills for a moment: it gets the same size
        api["max_ongoing_requests"] = api["max_queued_requests"] = (
            cfg.classifier.max_ongoing_requests + cfg.classifier.max_queued_requests + INGRESS_HEADROOM)
    return Api.options(**api).bind(explainer, raw, segmenter, footprint_size)
