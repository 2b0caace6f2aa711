"""A deterministic, atomic, verified on-disk cache for checkpoints and other built artifacts.

Taught in chapter 9 (``chapters/09_pretraining.ipynb``, "缓存：训练一次，处处复用") and used by every
chapter whose training would be long (the uvadlc pattern: load when present, else build).

* Writes are atomic: an artifact is built in a temporary sibling folder, a ``MANIFEST.json`` with
  the SHA-256 of every file is written last, then the folder is renamed into place.
* Reads are verified: a folder whose manifest is missing, whose files changed, or whose
  fingerprint (the settings that built it) differs is rebuilt, never silently loaded.
* A file lock makes two processes (e.g. two notebooks under ``pytest -n 2``) build once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

MANIFEST = "MANIFEST.json"
ENV_VAR = "FTBOOK_CACHE"


class CorruptCheckpointError(RuntimeError):
    """A cached folder does not match its manifest (partial write, edited or truncated file)."""


def cache_dir() -> Path:
    """Root of the cache: ``$FTBOOK_CACHE``, else ``~/.cache/ftbook``."""
    root = Path(os.environ.get(ENV_VAR) or Path.home() / ".cache" / "ftbook")
    root.mkdir(parents=True, exist_ok=True)
    return root


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(folder: str | os.PathLike, fingerprint: Mapping[str, Any] | None = None) -> dict:
    """Write ``MANIFEST.json`` (fingerprint + SHA-256 and size of every file) into ``folder``."""
    folder = Path(folder)
    files = {
        str(p.relative_to(folder)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in _files(folder)
    }
    manifest = {"fingerprint": dict(fingerprint or {}), "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    return manifest


def verify(folder: str | os.PathLike, fingerprint: Mapping[str, Any] | None = None) -> dict:
    """Check ``folder`` against its manifest; return the manifest or raise CorruptCheckpointError."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise CorruptCheckpointError(f"{folder} has no {MANIFEST} (an interrupted write?)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
        if not isinstance(manifest.get("fingerprint"), dict) or not isinstance(files, dict):
            raise ValueError("expected an object with 'fingerprint' and 'files' objects")
        for name, meta in files.items():
            if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str) \
                    or not isinstance(meta.get("bytes"), int):
                raise ValueError(f"entry {name!r} lacks 'sha256' and 'bytes'")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptCheckpointError(f"{path} is not a valid manifest: {exc}") from None
    if fingerprint is not None and manifest.get("fingerprint") != json.loads(
        json.dumps(dict(fingerprint), sort_keys=True)
    ):
        raise CorruptCheckpointError(
            f"{folder} was built with other settings {manifest.get('fingerprint')}, "
            f"expected {dict(fingerprint)}"
        )
    for name, meta in files.items():
        p = folder / name
        if not p.is_file():
            raise CorruptCheckpointError(f"{folder}: file {name} listed in the manifest is missing")
        if p.stat().st_size != meta["bytes"] or sha256_file(p) != meta["sha256"]:
            raise CorruptCheckpointError(f"{folder}: file {name} does not match its SHA-256")
    extra = sorted(str(p.relative_to(folder)) for p in _files(folder) if str(p.relative_to(folder)) not in files)
    if extra:
        raise CorruptCheckpointError(f"{folder}: files not in the manifest: {extra}")
    return manifest


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, fingerprint: Mapping[str, Any] | None = None) -> Iterator[Path]:
    """Yield a temporary folder; on success, write its manifest and move it to ``target``.

    On an exception the temporary folder is removed and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        write_manifest(tmp, fingerprint)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "x")
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def cached(
    name: str,
    build: Callable[[Path], None],
    fingerprint: Mapping[str, Any],
    *,
    root: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Return the verified folder ``<cache>/<name>``, building it with ``build(tmp_dir)`` if needed.

    ``fingerprint`` holds every setting that changes the result (sizes, seed, versions); a folder
    built with other settings, or corrupted, is rebuilt and the reason is logged.
    """
    from filelock import FileLock

    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"cache name must be a plain folder name, got {name!r}")
    base = Path(root) if root is not None else cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    target = base / name
    with FileLock(str(base / f".{name}.lock")):
        if target.exists():
            try:
                verify(target, fingerprint)
                return target
            except CorruptCheckpointError as exc:
                log(f"[ftbook] cache {name}: {exc}; rebuilding")
        with atomic_dir(target, fingerprint) as tmp:
            build(tmp)
    return target
