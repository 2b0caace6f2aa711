"""Serving a fine-tuned classifier: safe loading, batch prediction, and an HTTP API.

Taught in chapter 12 (``chapters/12_deployment.ipynb``, 模型部署).

* :func:`load_classifier` loads a checkpoint folder **from safetensors only** (a ``.bin`` /
  pickle file is never unpickled) and never runs code shipped with the checkpoint
  (``trust_remote_code`` stays off; a config that asks for remote code is refused).
* :class:`Classifier` predicts in batches of at most ``max_batch`` texts, each truncated to
  ``max_length`` tokens; the output is plain JSON-ready data (label, score, probabilities).
* :func:`create_app` wraps a classifier in a FastAPI app: ``POST /predict``, ``GET /health``,
  OpenAPI docs at ``/docs``. Bad input always gets a 4xx with a message that says what was wrong
  and what was expected, never a 500: malformed JSON, wrong types, empty list, empty strings,
  too many texts, texts over the length limit, bodies over the size limit.
* Bounded queue: at most ``max_concurrency`` ``/predict`` requests are in flight or waiting for
  the model (one forward pass runs at a time); the next one gets 503 with a JSON message and a
  ``Retry-After`` header at once instead of queueing without end. The app enforces this itself
  (:class:`ConcurrencyLimitMiddleware`, under any ASGI server); uvicorn's ``limit_concurrency``
  also caps the open connections at ``max_concurrency + CONNECTION_HEADROOM``.
* ``python -m ftbook serve CHECKPOINT --host 127.0.0.1 --port 8000`` runs it with uvicorn.
"""

# No "from __future__ import annotations": FastAPI must see the local request model classes.

import argparse
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .config import register_sizes

register_sizes(
    "serve",
    # Limits of the API and sizes of the load benchmark.
    # max_concurrency: /predict requests in flight or waiting (twice the benchmark's clients).
    # bench_*: the load test of chapter 12 - bench_requests per concurrency level (bench_levels),
    # each level stopped after bench_max_seconds; then bench_batch texts per request at the top level.
    tiny=dict(max_batch=32, max_length=128, max_texts=64, max_chars=2000, max_body_bytes=1_000_000,
              max_concurrency=16, bench_requests=300, bench_levels=(1, 2, 4, 8), bench_batch=8,
              bench_max_seconds=60),
    full=dict(max_batch=64, max_length=256, max_texts=128, max_chars=5000, max_body_bytes=4_000_000,
              max_concurrency=32, bench_requests=2000, bench_levels=(1, 4, 16), bench_batch=16,
              bench_max_seconds=120),
)

UNSAFE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# uvicorn's limit_concurrency = max_concurrency + this: room for /health, /docs and idle
# keep-alive connections; past it uvicorn itself answers 503 (plain text) to new connections.
CONNECTION_HEADROOM = 16


class CheckpointError(ValueError):
    """A checkpoint folder is missing, incomplete, or asks for something unsafe."""


def check_checkpoint(checkpoint_dir: str | os.PathLike) -> Path:
    """Validate a classifier checkpoint folder and return it as a ``Path``.

    Expected: ``config.json`` with ``id2label``, ``model.safetensors`` (or sharded
    ``*.safetensors``), and tokenizer files. Refused: no safetensors weights (pickle-only
    checkpoints), and configs with ``auto_map`` (they ask to run code from the checkpoint).
    """
    if not isinstance(checkpoint_dir, (str, os.PathLike)):
        raise TypeError(f"checkpoint_dir must be a path, got {type(checkpoint_dir).__name__}")
    path = Path(checkpoint_dir)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder {path} does not exist (expected a folder "
                              f"written by save_pretrained: config.json, model.safetensors, tokenizer)")
    config = path / "config.json"
    if not config.is_file():
        raise CheckpointError(f"{path} has no config.json; expected a save_pretrained folder")
    try:
        cfg = json.loads(config.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CheckpointError(f"{config} is not valid JSON: {exc}") from None
    if not any(path.glob("*.safetensors")):
        unsafe = sorted(p.name for p in path.iterdir() if p.suffix in UNSAFE_SUFFIXES)
        found = f" (found pickle-based {unsafe}, which we refuse to unpickle)" if unsafe else ""
        raise CheckpointError(
            f"{path} has no *.safetensors weights{found}; expected model.safetensors. "
            f"Convert a trusted checkpoint with model.save_pretrained(dir, safe_serialization=True)"
        )
    if cfg.get("auto_map"):
        raise CheckpointError(
            f"{config} has auto_map {cfg['auto_map']!r}: the checkpoint wants to run its own Python "
            f"code (trust_remote_code). We serve only built-in transformers architectures"
        )
    id2label = cfg.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        raise CheckpointError(f"{config} has no id2label; expected a sequence-classification checkpoint")
    if not ((path / "tokenizer.json").is_file() or (path / "vocab.txt").is_file()):
        raise CheckpointError(f"{path} has no tokenizer files (tokenizer.json or vocab.txt); "
                              f"save the tokenizer with tokenizer.save_pretrained(dir)")
    return path


@dataclass
class Classifier:
    """A sequence classifier ready for inference: model (eval mode), tokenizer and limits."""

    model: Any
    tokenizer: Any
    max_batch: int = 32
    max_length: int = 128

    def __post_init__(self):
        for name in ("max_batch", "max_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.model.eval()
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        self._lock = threading.Lock()  # one forward pass at a time: torch already uses every core

    def _check_texts(self, texts: Sequence[str]) -> list[str]:
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, got one str; wrap it: [text]")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
            if not text.strip():
                raise ValueError(f"texts[{i}] is empty or only whitespace; expected some text")
        return texts

    def logits(self, texts: Sequence[str]):
        """Logits ``(len(texts), num_labels)`` as a float32 tensor, computed in batches."""
        import torch

        texts = self._check_texts(texts)
        out = []
        device = next(self.model.parameters()).device
        with self._lock, torch.inference_mode():
            for start in range(0, len(texts), self.max_batch):
                chunk = texts[start:start + self.max_batch]
                enc = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length,
                                     return_tensors="pt").to(device)
                out.append(self.model(**enc).logits.float().cpu())  # (batch, num_labels)
        if not out:
            return torch.zeros(0, len(self.labels))
        return torch.cat(out)

    def predict(self, texts: Sequence[str]) -> list[dict]:
        """For each text: ``{"label", "score", "probabilities": {label: p}}`` (rounded to 6 places)."""
        probs = self.logits(texts).softmax(-1)
        results = []
        for row in probs.tolist():
            best = max(range(len(row)), key=row.__getitem__)
            results.append({
                "label": self.labels[best],
                "score": round(row[best], 6),
                "probabilities": {lab: round(p, 6) for lab, p in zip(self.labels, row)},
            })
        return results


def load_classifier(checkpoint_dir: str | os.PathLike, *, max_batch: int = 32, max_length: int = 128,
                    device: str | None = None) -> Classifier:
    """Load a fine-tuned sequence-classification checkpoint safely (safetensors only, no remote code)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = check_checkpoint(checkpoint_dir)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, use_safetensors=True, trust_remote_code=False)
    if device is not None:
        model.to(device)
    return Classifier(model=model, tokenizer=tokenizer, max_batch=max_batch, max_length=max_length)


# ---------------------------------------------------------------------------------------------
# HTTP API
# ---------------------------------------------------------------------------------------------

class BodyLimitMiddleware:
    """ASGI middleware: answer 413 to request bodies over ``max_bytes`` without reading them all.

    A ``Content-Length`` over the limit is refused at once; a body without one (chunked) is read
    until it passes the limit, then refused. Smaller bodies are replayed to the app unchanged.
    """

    def __init__(self, app, max_bytes: int):
        if not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
        self.app, self.max_bytes = app, max_bytes

    async def _refuse(self, send, size: str) -> None:
        body = json.dumps({"error": f"request body is {size} bytes; the limit is {self.max_bytes} "
                                    f"bytes. Send fewer or shorter texts"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared > self.max_bytes:
                return await self._refuse(send, str(declared))
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                return await self._refuse(send, f"more than {total}")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def _check_positive_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


class ConcurrencyLimitMiddleware:
    """ASGI middleware: at most ``max_concurrency`` requests to ``paths`` in flight or waiting.

    A request past the limit gets 503 at once, with ``Retry-After: retry_after`` and a JSON body
    ``{"detail": ..., "error": ...}`` (the same message under FastAPI's key and this API's) saying
    how many requests are in flight. The slot is freed just before the last response byte is sent,
    so a client that has read its answer always finds its slot free again. Works under any ASGI
    server (uvicorn, a test client), independently of uvicorn's ``limit_concurrency``.
    """

    def __init__(self, app, max_concurrency: int, paths: Sequence[str] = ("/predict",),
                 retry_after: int = 1):
        _check_positive_int("max_concurrency", max_concurrency)
        _check_positive_int("retry_after", retry_after)
        if isinstance(paths, str) or not paths:
            raise ValueError(f"paths must be a non-empty list of paths, got {paths!r}")
        self.app, self.max_concurrency = app, max_concurrency
        self.paths, self.retry_after = frozenset(paths), retry_after
        self._active = 0
        self._lock = threading.Lock()  # a test client may run requests on several event loops

    @property
    def in_flight(self) -> int:
        """Requests to ``paths`` admitted and not yet answered."""
        return self._active

    def _acquire(self) -> bool:
        """Take a slot; False when all are taken."""
        with self._lock:
            if self._active >= self.max_concurrency:
                return False
            self._active += 1
            return True

    def _release(self) -> None:
        with self._lock:
            self._active -= 1

    async def _refuse(self, send) -> None:
        message = (f"server busy: {self._active} prediction requests are in flight or waiting for the "
                   f"model (the limit is {self.max_concurrency}); retry in {self.retry_after} s")
        body = json.dumps({"detail": message, "error": message}).encode()
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"retry-after", str(self.retry_after).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            return await self.app(scope, receive, send)
        if not self._acquire():
            return await self._refuse(send)
        released = False

        def release_once() -> None:
            nonlocal released
            if not released:
                released = True
                self._release()

        async def send_and_release(message):
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                release_once()  # before the client can see the end of the answer
            await send(message)

        try:
            return await self.app(scope, receive, send_and_release)
        finally:
            release_once()


def _describe_validation_error(err: dict) -> str:
    loc = [str(x) for x in err.get("loc", ()) if x != "body"]
    where = ".".join(loc) if loc else "body"
    kind = err.get("type", "")
    if kind == "json_invalid":
        return "body is not valid JSON; expected {\"texts\": [\"...\", ...]}"
    if kind == "missing":
        return f"field '{where}' is missing; expected {{\"texts\": [\"...\", ...]}}"
    if kind == "extra_forbidden":
        return f"unknown field '{where}'; the only field is 'texts'"
    return f"{where}: {err.get('msg', 'invalid')}"


def _api_models(max_texts: int, max_chars: int):
    """The request and response models of ``POST /predict`` for these limits."""
    from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        texts: list[StrictStr] = Field(
            ..., description=f"1 to {max_texts} non-empty texts, each at most {max_chars} characters",
            examples=[["The market rallied after the central bank cut rates."]])

        @field_validator("texts")
        @classmethod
        def _limits(cls, texts: list[str]) -> list[str]:
            if not texts:
                raise ValueError(f"texts is empty; expected 1 to {max_texts} texts")
            if len(texts) > max_texts:
                raise ValueError(f"{len(texts)} texts sent; the limit is {max_texts} per request")
            for i, text in enumerate(texts):
                if not text.strip():
                    raise ValueError(f"texts[{i}] is empty or only whitespace; expected some text")
                if len(text) > max_chars:
                    raise ValueError(f"texts[{i}] has {len(text)} characters; the limit is {max_chars}")
            return texts

    class Prediction(BaseModel):
        label: str
        score: float
        probabilities: dict[str, float]

    class PredictResponse(BaseModel):
        predictions: list[Prediction]
        model: str

    return PredictRequest, PredictResponse


def create_app(checkpoint_dir: str | os.PathLike | None = None, *, classifier: Classifier | None = None,
               max_texts: int = 64, max_chars: int = 2000, max_body_bytes: int = 1_000_000,
               max_batch: int = 32, max_length: int = 128, max_concurrency: int = 16):
    """The FastAPI app serving one classifier (from ``checkpoint_dir`` or a ready ``classifier``).

    ``POST /predict`` ``{"texts": [...]}`` -> ``{"predictions": [{"label", "score",
    "probabilities"}], "model": name}``; ``GET /health``; docs at ``/docs`` and ``/openapi.json``.
    Limits: at most ``max_texts`` texts, each 1..``max_chars`` characters, bodies up to
    ``max_body_bytes``; each text is then truncated to ``max_length`` tokens by the tokenizer.
    At most ``max_concurrency`` predictions in flight or waiting; past that, 503 at once
    (:class:`ConcurrencyLimitMiddleware`).
    """
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    if (checkpoint_dir is None) == (classifier is None):
        raise ValueError("pass exactly one of checkpoint_dir or classifier")
    for name, value in (("max_texts", max_texts), ("max_chars", max_chars),
                        ("max_body_bytes", max_body_bytes), ("max_concurrency", max_concurrency)):
        _check_positive_int(name, value)
    if classifier is None:
        classifier = load_classifier(checkpoint_dir, max_batch=max_batch, max_length=max_length)
    name = Path(checkpoint_dir).name if checkpoint_dir is not None else type(classifier.model).__name__
    started = time.time()

    PredictRequest, PredictResponse = _api_models(max_texts, max_chars)

    app = FastAPI(
        title="ftbook classifier",
        description="A fine-tuned BERT text classifier (chapter 12 of the book). "
                    f"Labels: {', '.join(classifier.labels)}.",
        version="1.0",
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        messages = [_describe_validation_error(e) for e in errors]
        # Pydantic's own errors can hold the bad input (up to megabytes): return only messages.
        return JSONResponse(status_code=422, content={"error": "; ".join(messages), "details": messages})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):  # last resort: say so, no traceback
        return JSONResponse(status_code=500, content={"error": f"internal error ({type(exc).__name__})"})

    @app.get("/health")
    def health() -> dict:
        """Liveness and what is loaded."""
        return {"status": "ok", "model": name, "labels": classifier.labels,
                "max_texts": max_texts, "max_chars": max_chars, "max_length": classifier.max_length,
                "max_concurrency": max_concurrency, "uptime_s": round(time.time() - started, 1)}

    @app.post("/predict", response_model=PredictResponse)
    def predict(request: PredictRequest) -> dict:
        """Classify texts; labels and probabilities for each, in input order."""
        return {"predictions": classifier.predict(request.texts), "model": name}

    app.state.classifier = classifier
    # The last added runs first: the body limit reads (at most max_body_bytes of) the body, then
    # the concurrency limit admits or refuses; a refused request's body is thus never left unread.
    app.add_middleware(ConcurrencyLimitMiddleware, max_concurrency=max_concurrency)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    return app


def main(argv: list[str] | None = None) -> int:
    """``python -m ftbook serve CHECKPOINT --host 127.0.0.1 --port 8000``."""
    from .config import get_profile

    sizes = get_profile().sizes("serve")
    ap = argparse.ArgumentParser(prog="python -m ftbook serve", description="Serve a fine-tuned "
                                 "classifier checkpoint over HTTP (chapter 12).")
    ap.add_argument("checkpoint", help="folder written by save_pretrained (safetensors)")
    ap.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--max-texts", type=int, default=sizes.max_texts)
    ap.add_argument("--max-chars", type=int, default=sizes.max_chars)
    ap.add_argument("--max-batch", type=int, default=sizes.max_batch)
    ap.add_argument("--max-length", type=int, default=sizes.max_length)
    ap.add_argument("--max-body-bytes", type=int, default=sizes.max_body_bytes)
    ap.add_argument("--max-concurrency", type=int, default=sizes.max_concurrency,
                    help="predict requests in flight or waiting; more get 503 (default %(default)s)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = ap.parse_args(argv)
    if not 0 < args.port < 65536:
        ap.error(f"--port must be 1..65535, got {args.port}")
    if args.max_concurrency < 1:
        ap.error(f"--max-concurrency must be a positive int, got {args.max_concurrency}")
    import torch
    import uvicorn

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        app = create_app(args.checkpoint, max_texts=args.max_texts, max_chars=args.max_chars,
                         max_body_bytes=args.max_body_bytes, max_batch=args.max_batch,
                         max_length=args.max_length, max_concurrency=args.max_concurrency)
    except (CheckpointError, TypeError, ValueError) as exc:
        print(f"error: {exc}", flush=True)
        return 2
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                limit_concurrency=args.max_concurrency + CONNECTION_HEADROOM)
    return 0


# ---------------------------------------------------------------------------------------------
# Running the real server and putting it under a bounded load (chapter 12, benchmarks/serve.py)
# ---------------------------------------------------------------------------------------------

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class running_server:
    """Context manager: ``python -m ftbook serve`` in a subprocess on a loopback port.

    ``with running_server(ckpt) as url:`` yields ``http://127.0.0.1:PORT`` once ``/health``
    answers, and always stops the process on exit (terminate, then kill after 20 s).
    """

    def __init__(self, checkpoint_dir: str | os.PathLike, *, port: int | None = None,
                 startup_timeout: float = 180.0, extra_args: Sequence[str] = ()):
        self.checkpoint_dir = check_checkpoint(checkpoint_dir)
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.extra_args = [str(a) for a in extra_args]
        self.proc = None

    def __enter__(self) -> str:
        import subprocess
        import sys

        import httpx

        cmd = [sys.executable, "-m", "ftbook", "serve", str(self.checkpoint_dir), "--host", "127.0.0.1",
               "--port", str(self.port), *self.extra_args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace")
                raise RuntimeError(f"server exited with code {self.proc.returncode}: {out[-2000:]}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    return url
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise TimeoutError(f"server did not answer /health within {self.startup_timeout} s")
            time.sleep(0.3)

    def __exit__(self, *exc) -> None:
        import subprocess

        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def load_test(url: str, texts: Sequence[str], *, requests: int, concurrency: int = 1, batch: int = 1,
              timeout: float = 120.0, max_seconds: float | None = None) -> dict:
    """Send ``requests`` POST /predict requests of ``batch`` texts each from ``concurrency`` threads.

    Bounded in count and, with ``max_seconds``, in time (no request starts after it; ``requests``
    in the result is the number sent), and loopback-only (``url`` must point at this machine).
    Returns requests/s, texts/s, p50/p95/max latency in milliseconds and the number of errors
    (non-200 answers or failures).
    """
    from concurrent.futures import ThreadPoolExecutor
    from urllib.parse import urlparse

    import httpx

    host = urlparse(url).hostname or ""
    if host not in {h.strip("[]") for h in LOOPBACK_HOSTS}:
        raise ValueError(f"load_test only targets this machine (127.0.0.1 / localhost), got host {host!r}")
    for name, value, upper in (("requests", requests, 100_000), ("concurrency", concurrency, 256),
                               ("batch", batch, 10_000)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= upper:
            raise ValueError(f"{name} must be an int in 1..{upper}, got {value!r}")
    if max_seconds is not None and (isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float))
                                    or not max_seconds > 0):
        raise ValueError(f"max_seconds must be a positive number or None, got {max_seconds!r}")
    texts = [t for t in texts]
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise ValueError("texts must be a non-empty list of non-empty strings")
    payloads = [{"texts": [texts[(i * batch + j) % len(texts)] for j in range(batch)]}
                for i in range(requests)]
    latencies: list[float] = []
    errors: list[str] = []
    local = threading.local()

    def one(payload: dict) -> None:
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            return  # the time bound: not sent
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=timeout)
        t0 = time.perf_counter()
        try:
            r = local.client.post("/predict", json=payload)
            ok = r.status_code == 200 and len(r.json()["predictions"]) == len(payload["texts"])
            if not ok:
                errors.append(f"HTTP {r.status_code}")
        except Exception as exc:  # counted and reported, never raised mid-run
            errors.append(type(exc).__name__)
        latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, payloads))
    seconds = time.perf_counter() - start
    sent = len(latencies)
    return {
        "requests": sent, "planned": requests, "concurrency": concurrency, "batch": batch,
        "errors": len(errors), "error_kinds": sorted(set(errors)),
        "seconds": seconds, "requests_per_s": sent / seconds,
        "texts_per_s": sent * batch / seconds,
        "p50_ms": 1000 * _percentile(latencies, 50), "p95_ms": 1000 * _percentile(latencies, 95),
        "p99_ms": 1000 * _percentile(latencies, 99),
        "max_ms": 1000 * max(latencies) if latencies else float("nan"),
    }


def load_sweep(url: str, texts: Sequence[str], *, requests: int, levels: Sequence[int], batch: int,
               max_seconds: float | None = None, warmup: int = 8) -> list[dict]:
    """The load test of chapter 12 and ``benchmarks/serve.py``: ``warmup`` unmeasured requests,
    then ``requests`` one-text requests at each concurrency in ``levels``, then the same number of
    texts in requests of ``batch`` texts at the highest level. Each row is :func:`load_test`'s
    result with its ``name``; every level is bounded by ``requests`` and ``max_seconds``."""
    if not levels or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in levels):
        raise ValueError(f"levels must be a non-empty list of positive ints, got {levels!r}")
    load_test(url, texts, requests=warmup)  # the first requests pay for lazy initialisation
    rows = [{"name": f"{c} 并发，1 条/请求", **load_test(url, texts, requests=requests, concurrency=c,
                                                      max_seconds=max_seconds)} for c in levels]
    top = max(levels)
    rows.append({"name": f"{top} 并发，{batch} 条/请求",
                 **load_test(url, texts, requests=max(1, requests // batch), concurrency=top, batch=batch,
                             max_seconds=max_seconds)})
    return rows


def format_sweep(rows: Sequence[dict]) -> str:
    """:func:`load_sweep`'s rows as a table (our printed output is Chinese)."""
    lines = [f"{'负载':<16}{'请求数':>6}{'错误':>5}{'请求/s':>9}{'文本/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"]
    for r in rows:
        lines.append(f"{r['name']:<16}{r['requests']:>6}{r['errors']:>5}{r['requests_per_s']:>9.1f}"
                     f"{r['texts_per_s']:>9.1f}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}{r['p99_ms']:>9.1f}")
    return "\n".join(lines)
