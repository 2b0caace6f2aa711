"""A deterministic, atomic, verified on-disk cache for checkpoints and other built artifacts.

Taught in chapter 9 (``chapters/09_pretraining.ipynb``, "缓存：训练一次，处处复用") and used by every
chapter whose training would be long (the uvadlc pattern: load when present, else build).

* Writes are atomic: an artifact is built in a temporary sibling folder, a ``MANIFEST.json`` with
  the SHA-256 of every file is written last, then the folder is renamed into place.
* Reads are verified: a folder whose manifest is missing, whose files changed, or whose
  fingerprint (the settings that built it) differs is rebuilt, never silently loaded.
* A file lock makes two processes (e.g. two notebooks under ``pytest -n 2``) build once.
* Prebuilt entries: a long run done once may ship in the package, ``ftbook/prebuilt/<name>``, as
  an exact copy of its cache folder (manifest included). :func:`cached` fills an empty cache from
  it when its fingerprint equals the one the current code asks for; otherwise (other code, other
  settings) it builds as usual and says why. ``FTBOOK_NO_PREBUILT=1`` ignores the prebuilt copies
  (to reproduce one), and ``python -m ftbook prebuilt ship NAME`` copies a cache entry there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

MANIFEST = "MANIFEST.json"
ENV_VAR = "FTBOOK_CACHE"
NO_PREBUILT_VAR = "FTBOOK_NO_PREBUILT"
PREBUILT_ROOT = Path(__file__).resolve().parent / "prebuilt"

# where each entry named so far in this process came from: "cache", "prebuilt" or "built"
SOURCES: dict[str, str] = {}
# True (tests): an entry whose prebuilt copy is stale raises instead of being built
STALE_PREBUILT_IS_ERROR = False


class StalePrebuiltError(RuntimeError):
    """The prebuilt copy of a cache entry was made by other code or settings than the current ones."""


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


def fingerprint(*modules, **settings: Any) -> dict:
    """The one cache fingerprint of the book: ``settings`` (sizes, seed, base model...), the
    SHA-256 of the source of every module in ``modules`` (the code that builds the result), and
    the versions of the libraries whose arithmetic it depends on.

    Editing any of those modules (even a comment) rebuilds the cached result, so a cache never
    serves what older code produced. ``modules`` are module objects (``import ftbook.finetune as
    m; fingerprint(m, ...)``), so this ground-floor module imports nothing of ``ftbook``.
    """
    from importlib.metadata import PackageNotFoundError, version

    code = {}
    for module in modules:
        path = getattr(module, "__file__", None)
        if not path or not Path(path).is_file():
            raise TypeError(f"fingerprint() takes module objects with a source file, got {module!r}")
        code[module.__name__] = sha256_file(path)[:16]
    libs = {}
    for lib in ("torch", "transformers"):
        try:
            libs[lib] = version(lib).split("+")[0]
        except PackageNotFoundError:
            libs[lib] = None
    if {"code", "versions"} & settings.keys():
        raise ValueError("'code' and 'versions' are filled in by fingerprint(); pass other names")
    return {**json.loads(json.dumps(settings, sort_keys=True, default=_jsonable)), "code": code,
            "versions": libs}


def _jsonable(value: Any):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if hasattr(value, "__dict__"):  # SimpleNamespace sizes, dataclass-like configs
        return vars(value)
    raise TypeError(f"fingerprint setting of type {type(value).__name__} is not JSON-serialisable: {value!r}")


def fingerprint_diff(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two fingerprints (``code.ftbook.training``)."""
    out = []
    for key in sorted(set(a) | set(b), key=str):
        x, y = a.get(key), b.get(key)
        if isinstance(x, Mapping) and isinstance(y, Mapping):
            out += fingerprint_diff(x, y, f"{prefix}{key}.")
        elif x != y:
            out.append(f"{prefix}{key}")
    return out


def prebuilt_dir(name: str) -> Path:
    """Where a shipped copy of cache entry ``name`` lives (it may not exist)."""
    return PREBUILT_ROOT / name


def _from_prebuilt(name: str, target: Path, fingerprint: Mapping[str, Any], log: Callable[[str], None]) -> bool:
    """Fill ``target`` from the prebuilt copy of ``name`` when it exists, is intact and was built with
    ``fingerprint``; return whether it did. A stale copy is reported (the keys that differ), not used."""
    shipped = prebuilt_dir(name)
    if os.environ.get(NO_PREBUILT_VAR) == "1" or not (shipped / MANIFEST).is_file():
        return False
    manifest = verify(shipped)  # a damaged shipped file is an error, never a silent rebuild
    wanted = json.loads(json.dumps(dict(fingerprint), sort_keys=True))
    if manifest["fingerprint"] != wanted:
        keys = fingerprint_diff(manifest["fingerprint"], wanted)
        if STALE_PREBUILT_IS_ERROR:
            raise StalePrebuiltError(f"ftbook/prebuilt/{name} is stale: {', '.join(keys)} differ; rebuild it "
                                     f"(FTBOOK_NO_PREBUILT=1) and ship it again (python -m ftbook prebuilt ship)")
        log(f"[ftbook] 缓存 {name}：随书发布的预构建副本由别的代码或设置生成（{', '.join(keys)} 不同），在本机重新构建")
        return False
    with atomic_dir(target, fingerprint) as tmp:
        for path in _files(shipped):
            dest = tmp / path.relative_to(shipped)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
    verify(target, fingerprint)
    log(f"[ftbook] 缓存 {name}：从随书发布的预构建副本载入（ftbook/prebuilt/{name}）")
    return True


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
    built with other settings, or corrupted, is rebuilt and the reason is logged. An empty entry is
    first filled from its prebuilt copy (see the module docstring) when that copy is current.
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
                SOURCES[name] = "cache"
                return target
            except CorruptCheckpointError as exc:
                log(f"[ftbook] cache {name}: {exc}; rebuilding")
        if _from_prebuilt(name, target, fingerprint, log):
            SOURCES[name] = "prebuilt"
            return target
        with atomic_dir(target, fingerprint) as tmp:
            build(tmp)
        SOURCES[name] = "built"
    return target


def ship_prebuilt(name: str, root: str | os.PathLike | None = None, dest_root: str | os.PathLike | None = None) -> Path:
    """Copy the verified cache entry ``name`` (manifest and all) to ``ftbook/prebuilt/<name>``."""
    source = (Path(root) if root is not None else cache_dir()) / name
    verify(source)
    dest = (Path(dest_root) if dest_root is not None else PREBUILT_ROOT) / name
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest)
    verify(dest)
    return dest


# ---------------------------------------------------------------- training checkpoints (chapter 10)

STATE_FILE = "trainer_state.json"
TRAINING_STATE_FILE = "training_state.pt"


def save_checkpoint(path: str | os.PathLike, model, tokenizer=None, optimizer=None, scheduler=None,
                    scaler=None, state: Mapping[str, Any] | None = None) -> Path:
    """Write a checkpoint folder atomically (rank 0 only): safetensors weights + ``config.json``,
    tokenizer files, and, with ``optimizer``, the optimizer / scheduler / scaler / RNG state that
    :func:`load_training_state` reads back to resume. ``state`` goes to ``trainer_state.json``."""
    import torch

    from .distributed import barrier, unwrap, world

    path = Path(path)
    if world()[0] == 0:
        with atomic_dir(path, {"kind": "training-checkpoint"}) as tmp:
            unwrap(model).save_pretrained(tmp)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
            if optimizer is not None:
                extra = {"optimizer": optimizer.state_dict(), "rng_cpu": torch.get_rng_state()}
                if scheduler is not None:
                    extra["scheduler"] = scheduler.state_dict()
                if scaler is not None:
                    extra["scaler"] = scaler.state_dict()
                if torch.cuda.is_available():
                    extra["rng_cuda"] = torch.cuda.get_rng_state_all()
                torch.save(extra, tmp / TRAINING_STATE_FILE)
            if state is not None:
                (tmp / STATE_FILE).write_text(json.dumps(dict(state), indent=1), encoding="utf-8")
    barrier()
    return path


def load_weights(model, folder: str | os.PathLike) -> None:
    """Load ``folder/model.safetensors`` into ``model`` (or the model inside a DDP wrapper).
    Tied weights may be stored once; any other missing or unexpected key is an error."""
    from safetensors.torch import load_file

    from .distributed import unwrap

    folder = Path(folder)
    state = load_file(str(folder / "model.safetensors"))
    model = unwrap(model)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = dict(getattr(model, "all_tied_weights_keys", None) or {})  # transformers: {tied key: its source}
    missing = [k for k in missing if "position_ids" not in k and tied.get(k) not in state]
    if unexpected or missing:
        raise RuntimeError(f"checkpoint {folder} does not fit the model: missing {missing}, unexpected {unexpected}")


def load_training_state(folder: str | os.PathLike) -> tuple[dict, dict]:
    """``(trainer_state, tensors)`` of a checkpoint written by :func:`save_checkpoint` with an
    optimizer: verified against its manifest, and read with ``torch.load(weights_only=True)``
    (tensors and plain containers only: a checkpoint cannot run code when it is resumed)."""
    import torch

    folder = Path(folder)
    for name in (STATE_FILE, TRAINING_STATE_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"nothing to resume: {folder} has no {name}")
    verify(folder)
    state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    tensors = torch.load(folder / TRAINING_STATE_FILE, weights_only=True)
    return state, tensors


# --------------------------------------------------------------------------- shipped models


def ship_folder(run_dir: str | os.PathLike, dest: str | os.PathLike, files: Sequence[str],
                fingerprint: Mapping[str, Any]) -> Path:
    """Copy ``files`` of a finished run into ``dest`` with a ``MANIFEST.json`` of their SHA-256
    digests, atomically: what the repository ships (the book's pre-trained models, adapters)."""
    run_dir = Path(run_dir)
    missing = [n for n in files if not (run_dir / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{run_dir} lacks {missing}: is the run finished?")
    with atomic_dir(dest, fingerprint) as tmp:
        for name in files:
            shutil.copy2(run_dir / name, tmp / name)
    return Path(dest)


def check_shipped_folder(folder: str | os.PathLike, files: Sequence[str], what: str, rebuild_command: str) -> dict:
    """Verify a shipped folder's ``files`` against its manifest; return the manifest. A missing or
    altered file raises an error that names it, ``what`` it belongs to and the command that rebuilds it."""
    folder = Path(folder)
    for name in (*files, MANIFEST):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} is missing: {what} ships with ftbook (reinstall it), "
                                    f"or rebuild it with: {rebuild_command}")
    try:
        return verify(folder)
    except CorruptCheckpointError as exc:
        raise CorruptCheckpointError(f"{exc}. Restore the file from the repository (git checkout -- "
                                     f"{folder}), or rebuild {what} with: {rebuild_command}") from None
