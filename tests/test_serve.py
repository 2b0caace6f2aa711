"""Tests of ftbook.serve: safe loading, batch prediction, the HTTP API's answers to bad input."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from concurrent.futures import TimeoutError as FuturesTimeout
from contextlib import contextmanager
from itertools import islice
from pathlib import Path

import pytest
import torch

from ftbook import serve
from ftbook.resources import minilm_path

LABELS = ["business", "sport", "tech"]


def make_checkpoint(folder: Path) -> Path:
    """A small fine-tuning-shaped checkpoint: MiniLM + a seeded random 3-class head."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(
        minilm_path(), num_labels=3, id2label=dict(enumerate(LABELS)),
        label2id={l: i for i, l in enumerate(LABELS)})
    model.save_pretrained(folder, safe_serialization=True)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def clf(ckpt):
    return serve.load_classifier(ckpt, max_batch=4, max_length=32)


@pytest.fixture(scope="module")
def client(clf):
    from fastapi.testclient import TestClient

    app = serve.create_app(classifier=clf, max_texts=8, max_chars=200, max_body_bytes=4000)
    return TestClient(app)


TEXTS = ["Shares rose after the results.", "The striker scored twice.", "A new chip is faster.",
         "Oil prices fell.", "The match ended in a draw.", "Phones get better cameras."]


# ---- loading ---------------------------------------------------------------------------------

def test_load_and_labels(clf):
    assert clf.labels == LABELS
    assert not clf.model.training


def test_refuses_missing_folder(tmp_path):
    with pytest.raises(serve.CheckpointError, match="does not exist"):
        serve.check_checkpoint(tmp_path / "nope")


def test_refuses_pickle_only_checkpoint(ckpt, tmp_path):
    bad = tmp_path / "pickled"
    bad.mkdir()
    for f in ckpt.iterdir():
        if f.suffix != ".safetensors":
            (bad / f.name).write_bytes(f.read_bytes())
    (bad / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(serve.CheckpointError, match="refuse to unpickle"):
        serve.load_classifier(bad)


def test_refuses_remote_code(ckpt, tmp_path):
    bad = tmp_path / "remote"
    bad.mkdir()
    for f in ckpt.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((bad / "config.json").read_text())
    cfg["auto_map"] = {"AutoModel": "evil.Model"}
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(serve.CheckpointError, match="trust_remote_code"):
        serve.check_checkpoint(bad)


def test_refuses_config_without_labels_or_tokenizer(ckpt, tmp_path):
    bad = tmp_path / "nolabels"
    bad.mkdir()
    for f in ckpt.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((bad / "config.json").read_text())
    cfg.pop("id2label", None)
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(serve.CheckpointError, match="id2label"):
        serve.check_checkpoint(bad)
    (bad / "config.json").write_text("{not json")
    with pytest.raises(serve.CheckpointError, match="not valid JSON"):
        serve.check_checkpoint(bad)
    with pytest.raises(TypeError, match="must be a path"):
        serve.check_checkpoint(123)


# ---- batch prediction ------------------------------------------------------------------------

def test_batched_equals_one_by_one(clf):
    batched = clf.logits(TEXTS)  # max_batch=4: two batches, padded differently
    single = torch.cat([clf.logits([t]) for t in TEXTS])
    assert batched.shape == (len(TEXTS), 3)
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-4)


def test_predict_structure(clf):
    preds = clf.predict(TEXTS[:2])
    assert len(preds) == 2
    for p in preds:
        assert set(p) == {"label", "score", "probabilities"}
        assert p["label"] in LABELS
        assert abs(sum(p["probabilities"].values()) - 1) < 1e-4
        assert p["score"] == max(p["probabilities"].values())


def test_truncation_to_max_length(clf):
    long = "word " * 500
    assert clf.predict([long])[0]["label"] in LABELS
    assert torch.allclose(clf.logits([long]), clf.logits([" ".join(["word"] * 100)]), atol=1e-5)


@pytest.mark.parametrize("bad,err,match", [
    ("one string", TypeError, "wrap it"),
    ([1, "x"], TypeError, r"texts\[0\] is int"),
    (["ok", "  "], ValueError, r"texts\[1\] is empty"),
])
def test_predict_bad_input(clf, bad, err, match):
    with pytest.raises(err, match=match):
        clf.predict(bad)


def test_classifier_bad_limits(clf):
    with pytest.raises(ValueError, match="max_batch must be a positive int"):
        serve.Classifier(model=clf.model, tokenizer=clf.tokenizer, max_batch=0)


# ---- HTTP API --------------------------------------------------------------------------------

def test_health(client):
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["labels"] == LABELS and body["max_texts"] == 8


def test_predict_equals_in_process(client, clf):
    r = client.post("/predict", json={"texts": TEXTS})
    assert r.status_code == 200
    assert r.json()["predictions"] == clf.predict(TEXTS)


def test_openapi_docs(client):
    spec = client.get("/openapi.json").json()
    assert "/predict" in spec["paths"] and "/health" in spec["paths"]
    assert client.get("/docs").status_code == 200


BAD_REQUESTS = [
    ("malformed json", dict(content=b'{"texts": ["a",', headers={"content-type": "application/json"}),
     422, "not valid JSON"),
    ("not an object", dict(json=["a", "b"]), 422, ""),
    ("missing field", dict(json={"text": ["a"]}), 422, "texts"),
    ("wrong type", dict(json={"texts": "just one string"}), 422, "texts"),
    ("number in list", dict(json={"texts": ["ok", 3]}), 422, "texts.1"),
    ("null in list", dict(json={"texts": [None]}), 422, "texts.0"),
    ("empty list", dict(json={"texts": []}), 422, "texts is empty"),
    ("empty string", dict(json={"texts": ["fine", ""]}), 422, r"texts[1] is empty"),
    ("whitespace", dict(json={"texts": ["   \n"]}), 422, r"texts[0] is empty"),
    ("too many texts", dict(json={"texts": ["a"] * 9}), 422, "limit is 8"),
    ("text too long", dict(json={"texts": ["x" * 201]}), 422, "201 characters; the limit is 200"),
    ("huge body", dict(json={"texts": ["y" * 5000]}), 413, "limit is 4000 bytes"),
    ("extra field", dict(json={"texts": ["a"], "debug": True}), 422, "unknown field"),
]


@pytest.mark.parametrize("name,kwargs,status,message", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_4xx_with_message(client, name, kwargs, status, message):
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_chunked_huge_body_refused(client):
    def gen():
        for _ in range(10):
            yield b"z" * 1000

    r = client.post("/predict", content=gen(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_wrong_method_and_path(client):
    assert client.get("/predict").status_code == 405
    assert client.post("/nowhere", json={}).status_code == 404


def test_create_app_arguments(clf, ckpt):
    with pytest.raises(ValueError, match="exactly one"):
        serve.create_app()
    with pytest.raises(ValueError, match="exactly one"):
        serve.create_app(ckpt, classifier=clf)
    with pytest.raises(ValueError, match="max_texts must be a positive int"):
        serve.create_app(classifier=clf, max_texts=0)


def test_body_limit_middleware_rejects_bad_limit():
    with pytest.raises(ValueError, match="max_bytes"):
        serve.BodyLimitMiddleware(app=None, max_bytes=0)


# ---- the real server: python -m ftbook serve, uvicorn on a loopback port ---------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_serves_over_http(ckpt, clf):
    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ftbook", "serve", str(ckpt), "--host", "127.0.0.1",
                             "--port", str(port), "--max-length", "32", "--max-batch", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode(errors="replace") if proc.poll() is not None else ""
                pytest.fail(f"server did not start: {out[-2000:]}")
            time.sleep(0.3)
        r = httpx.post(url + "/predict", json={"texts": TEXTS[:3]}, timeout=30)
        assert r.status_code == 200
        assert r.json()["predictions"] == clf.predict(TEXTS[:3])
        assert httpx.post(url + "/predict", content=b"{oops", timeout=30,
                          headers={"content-type": "application/json"}).status_code == 422
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_cli_bad_checkpoint_exits_2(tmp_path, capsys):
    assert serve.main([str(tmp_path / "missing"), "--port", "1"]) == 2
    assert "does not exist" in capsys.readouterr().out


def test_load_test_refuses_remote_and_bad_sizes():
    with pytest.raises(ValueError, match="only targets this machine"):
        serve.load_test("http://example.com:80", ["a"], requests=1)
    with pytest.raises(ValueError, match="requests must be an int"):
        serve.load_test("http://127.0.0.1:1", ["a"], requests=0)
    with pytest.raises(ValueError, match="concurrency must be an int"):
        serve.load_test("http://127.0.0.1:1", ["a"], requests=1, concurrency=1000)
    with pytest.raises(ValueError, match="non-empty list"):
        serve.load_test("http://127.0.0.1:1", [""], requests=1)
    with pytest.raises(ValueError, match="max_seconds"):
        serve.load_test("http://127.0.0.1:1", ["a"], requests=1, max_seconds=0)
    with pytest.raises(ValueError, match="levels"):
        serve.load_sweep("http://127.0.0.1:1", ["a"], requests=1, levels=[], batch=1)


def test_load_test_counts_errors_when_nothing_listens():
    res = serve.load_test(f"http://127.0.0.1:{free_port()}", ["a"], requests=3, concurrency=2, timeout=5)
    assert res["errors"] == 3 and res["requests"] == 3


def test_running_server_and_load_test(ckpt):
    with serve.running_server(ckpt, extra_args=["--max-length", "32"]) as url:
        res = serve.load_test(url, TEXTS, requests=6, concurrency=2, batch=2)
        rows = serve.load_sweep(url, TEXTS, requests=6, levels=[1, 2], batch=3, warmup=1)
        bounded = serve.load_test(url, TEXTS, requests=100_000, concurrency=2, max_seconds=0.5)
    assert res["errors"] == 0 and res["requests"] == 6
    assert res["p50_ms"] <= res["p95_ms"] <= res["p99_ms"] <= res["max_ms"]
    assert res["texts_per_s"] == pytest.approx(2 * res["requests_per_s"])
    assert [r["name"] for r in rows] == ["1 并发，1 条/请求", "2 并发，1 条/请求", "2 并发，3 条/请求"]
    assert [(r["requests"], r["concurrency"], r["batch"], r["errors"]) for r in rows] == [
        (6, 1, 1, 0), (6, 2, 1, 0), (2, 2, 3, 0)]
    assert "p99 ms" in serve.format_sweep(rows).splitlines()[0]
    # the time bound: far fewer than the 100,000 planned requests, and every one of them answered
    assert 0 < bounded["requests"] < 100_000 == bounded["planned"] and bounded["errors"] == 0
    assert bounded["seconds"] < 30


def test_percentile():
    assert serve._percentile([1, 2, 3, 4, 5], 50) == 3
    assert serve._percentile([0, 10], 95) == pytest.approx(9.5)


# ---- bounded queue: at most max_concurrency predictions in flight or waiting -----------------

class BlockingClassifier:
    """A stand-in *model* whose predict blocks until ``release`` is set; the limit under test is
    the app's real ConcurrencyLimitMiddleware. Counts the calls that reached the model."""

    def __init__(self):
        self.labels, self.max_length, self.model = LABELS, 32, object()
        self.release = threading.Event()
        self.entered = 0
        self._cond = threading.Condition()

    def predict(self, texts):
        with self._cond:
            self.entered += 1
            self._cond.notify_all()
        if not self.release.wait(timeout=120):
            raise TimeoutError("the test never released the model")
        return [{"label": LABELS[0], "score": 1.0, "probabilities": {l: float(l == LABELS[0]) for l in LABELS}}
                for _ in texts]

    def wait_entered(self, n: int, timeout: float = 60) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.entered >= n, timeout=timeout)


@contextmanager
def uvicorn_in_thread(app):
    """A real uvicorn server on a loopback port in a thread, *without* limit_concurrency: what
    is bounded here is bounded by the app itself."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def http_client(app, kind: str):
    import httpx
    from fastapi.testclient import TestClient

    if kind == "uvicorn":
        with uvicorn_in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as client:
            yield client
    else:
        with TestClient(app) as client:
            yield client


@pytest.mark.parametrize("kind", ["uvicorn", "testclient"])
def test_requests_past_max_concurrency_get_503_at_once(kind):
    limit, extra = 2, 3
    model = BlockingClassifier()
    app = serve.create_app(classifier=model, max_concurrency=limit)
    with http_client(app, kind) as client, ThreadPoolExecutor(limit + extra) as pool:
        try:
            futures = [pool.submit(client.post, "/predict", json={"texts": ["x"]})
                       for _ in range(limit + extra)]
            # The admitted ones block inside the model until release, so the first `extra`
            # answers can only be refusals; a missing limit shows up as a timeout here.
            try:
                first = [f.result() for f in islice(as_completed(futures, timeout=60), extra)]
            except FuturesTimeout:
                pytest.fail(f"no 503 within 60 s: {model.entered} requests reached the model (limit {limit})")
            assert [r.status_code for r in first] == [503] * extra, [r.text for r in first]
            for r in first:
                assert r.headers["retry-after"] == "1"
                detail = r.json()["detail"]
                assert "server busy" in detail and f"{limit} prediction requests" in detail
                assert "retry" in detail
            assert model.wait_entered(limit) and model.entered == limit
            assert client.get("/health").status_code == 200  # other paths are not queued
        finally:
            model.release.set()
        answers = [f.result(timeout=60) for f in futures]
        rest = [r for r in answers if r not in first]
        assert [r.status_code for r in rest] == [200] * limit
        assert rest[0].json()["predictions"][0]["label"] == LABELS[0]
        again = client.post("/predict", json={"texts": ["y", "z"]})  # slots are free again
        assert again.status_code == 200 and len(again.json()["predictions"]) == 2
        assert model.entered == limit + 1


def test_slot_is_freed_when_the_model_fails():
    class Failing(BlockingClassifier):
        def predict(self, texts):
            raise RuntimeError("boom")

    from fastapi.testclient import TestClient

    client = TestClient(serve.create_app(classifier=Failing(), max_concurrency=1),
                        raise_server_exceptions=False)
    for _ in range(3):  # with a leaked slot the second one would get 503
        assert client.post("/predict", json={"texts": ["x"]}).status_code == 500


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "4"])
def test_max_concurrency_must_be_positive(bad):
    model = BlockingClassifier()
    with pytest.raises(ValueError, match="max_concurrency must be a positive int"):
        serve.create_app(classifier=model, max_concurrency=bad)
    with pytest.raises(ValueError, match="max_concurrency must be a positive int"):
        serve.ConcurrencyLimitMiddleware(app=None, max_concurrency=bad)


def test_cli_passes_the_limit_to_the_app_and_uvicorn(monkeypatch, tmp_path, capsys):
    import uvicorn

    from ftbook.config import get_profile

    calls = {}

    def fake_create_app(*args, **kwargs):
        calls["app"] = (args, kwargs)
        return "APP"

    monkeypatch.setattr(serve, "create_app", fake_create_app)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.update(run=(app, kwargs)))
    assert serve.main([str(tmp_path), "--port", "8123", "--max-concurrency", "3"]) == 0
    assert calls["app"][1]["max_concurrency"] == 3
    app, kw = calls["run"]
    assert app == "APP" and kw["limit_concurrency"] == 3 + serve.CONNECTION_HEADROOM and kw["port"] == 8123
    calls.clear()
    assert serve.main([str(tmp_path), "--port", "8123"]) == 0
    assert calls["app"][1]["max_concurrency"] == get_profile().sizes("serve").max_concurrency
    for bad in ("0", "-2"):
        with pytest.raises(SystemExit) as exc:
            serve.main([str(tmp_path), "--max-concurrency", bad])
        assert exc.value.code == 2
        assert f"--max-concurrency must be a positive int, got {bad}" in capsys.readouterr().err
