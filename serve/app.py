"""The HTTP endpoint on Ray Serve: classify uploaded images and, on request, explain them with Grad-CAM.

    serve run serve/config.yaml                        # one machine
    serve deploy serve/config.yaml --address http://HEAD:8265   # a cluster (KubeRay: a RayService)

Three deployments: ``Api`` (FastAPI ingress: validation, auth, errors), ``Classifier`` (dynamic request
batching over the library's ``Predictor``) and ``Explainer`` (Grad-CAM in its own replicas: its hooks are not
safe under concurrent requests, and explanations must not slow classification down). Bad input never
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
from landslide.inference.predictor import Predictor, prepare_image
from landslide.models.card import ModelCard
from landslide.models.checkpoint import read_card

RETRY_AFTER_S = 1
IMAGE_TYPES = ("image/", "application/octet-stream")


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status, headers=headers)


# ------------------------------------------------------------------------------------------ model replicas
@serve.deployment
class Classifier:
    """Landslide probabilities with dynamic batching: concurrent requests share one forward pass."""

    def __init__(self, cfg: dict):
        settings = ServeAppConfig.model_validate(cfg)
        # torch takes its thread count from the OMP_NUM_THREADS Ray sets for the replica's CPUs
        self.predictor = Predictor(settings.model, settings.device, settings.threshold, tta=settings.tta)
        self.predict_batch.set_max_batch_size(settings.max_batch_size)
        self.predict_batch.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def predict_batch(self, items: list[tuple[np.ndarray, dict | None]]) -> list[float]:
        tags = [t for _, t in items]
        probs = self.predictor.predict(np.stack([image for image, _ in items]), tags if any(tags) else None)
        return [float(p) for p in probs]

    async def __call__(self, image: np.ndarray, tags: dict | None = None) -> float:
        return await self.predict_batch((image, tags))

    def model(self) -> dict:
        return {"info": self.predictor.info, "card": self.predictor.card.to_json()}


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
    def __init__(self, classifier: DeploymentHandle, explainer: DeploymentHandle, cfg: dict, input_size: int,
                 input_gsd_m: float | None = None):
        self.cfg = ServeAppConfig.model_validate(cfg)
        self.classifier, self.explainer = classifier, explainer
        self.token = None
        if self.cfg.auth_token_env:
            self.token = os.environ.get(self.cfg.auth_token_env, "")
            if not self.token:
                raise ConfigError(f"auth_token_env: environment variable {self.cfg.auth_token_env} is not set or "
                                  "empty; set it (e.g. from a Kubernetes Secret) or unset auth_token_env")
        self.input_size = input_size
        self.input_gsd_m = input_gsd_m
        self._model: dict | None = None
        self._schema: TagSchema | None = None  # the model's tag schema, read from its card once

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

    def _prepare(self, name: str, data: bytes, gsd_m: float | None = None) -> np.ndarray:
        try:
            image = decode_image(data, name, max_pixels=self.cfg.max_image_pixels)
        except ImageError as exc:
            status = 415 if exc.reason == UNRECOGNISED_FORMAT else 422
            raise HttpError(status, f"{name}: {exc.reason}") from None
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

    async def _call(self, handle: DeploymentHandle, *args) -> Any:
        try:
            return await asyncio.wait_for(handle.remote(*args), timeout=self.cfg.request_timeout_s)
        except BackPressureError:
            raise HttpError(503, "busy: too many requests queued; retry shortly",
                            {"Retry-After": str(RETRY_AFTER_S)}) from None
        except asyncio.TimeoutError:
            raise HttpError(504, f"no answer within {self.cfg.request_timeout_s:g} s") from None

    async def _model_info(self) -> dict:
        if self._model is None:
            self._model = await self._call(self.classifier.model)
        return self._model

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
            card = ModelCard.from_json((await self._model_info())["card"])
            if card.tags is None:
                raise HttpError(400, "tags: this model is image-only and takes no tags")
            self._schema = TagSchema.from_json(card.tags.tag_schema)
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
        try:
            info = await self._model_info()
        except HttpError as exc:
            return error_response(503, f"model not ready: {exc.message}", {"Retry-After": str(RETRY_AFTER_S)})
        return {"status": "ready", "model": info["info"]}

    @app.get("/v1/model")
    async def model(self, request: Request):
        self._authorize(request)
        return (await self._model_info())["card"]

    @app.post("/v1/classify")
    async def classify(self, request: Request, tags: str | None = None, gsd_m: str | None = None):
        self._authorize(request)
        (name, data), = await self._images(request, many=False)
        gsd, gsd_info = self._gsd(gsd_m)
        image = self._prepare(name, data, gsd)
        given = await self._tags(request, tags)
        result = self._result(await self._call(self.classifier, image, given), await self._model_info())
        return {**result, "tags_used": given or {}, **({"gsd": gsd_info} if gsd_info else {})}

    @app.post("/v1/classify:batch")
    async def classify_batch(self, request: Request, tags: str | None = None, gsd_m: str | None = None):
        """Several images; ``tags`` (multipart field or query parameter) and ``gsd_m`` apply to every image."""
        self._authorize(request)
        uploads = await self._images(request, many=True)
        gsd, gsd_info = self._gsd(gsd_m)
        given = await self._tags(request, tags)
        info = await self._model_info()

        async def one(name: str, data: bytes) -> dict:
            try:
                return {"name": name, **self._result(
                    await self._call(self.classifier, self._prepare(name, data, gsd), given), info)}
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
        image = self._prepare(name, data, gsd)
        out = await self._call(self.explainer, image, method, await self._tags(request, tags))
        result = self._result(out["probability"], await self._model_info())
        if format == "png":
            return Response(out["png"], media_type="image/png",
                            headers={"X-Landslide-Label": result["label"],
                                     "X-Landslide-Probability": f"{result['probability']:.6f}"})
        return {**result, "cam": {"method": method, "attention": out["attention"],
                                  "overlay_png_base64": base64.b64encode(out["png"]).decode()},
                **({"gsd": gsd_info} if gsd_info else {})}


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
    classifier = Classifier.options(**_options(cfg.classifier)).bind(raw)
    explainer = Explainer.options(**_options(cfg.explainer)).bind(raw)
    return Api.options(**_options(cfg.ingress)).bind(classifier, explainer, raw, card.input_size,
                                                      (card.input_gsd or {}).get("median_m"))
