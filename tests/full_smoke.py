"""Run a chapter top to bottom under ``FTBOOK_PROFILE=full`` against the stand-in hub (tests/standin_hub.py).

What changes for the smoke run is only sizes: every registered ``full`` section is overlaid with
:data:`SMOKE_SIZES` (fewer steps, samples and seeds, shorter sequences, narrower models) in every
Python process of the run, the kernel and any ``ftbook.workers`` spawn process alike (a
``sitecustomize`` on ``PYTHONPATH`` wraps ``ftbook.config.register_sizes`` as soon as the module is
imported). The models, data and code are the ``full`` profile's.

The stand-in models are random, so a chapter's claims about what training achieved cannot hold.
Each ``assert cond, msg`` in a chapter cell is therefore rewritten (an IPython AST transformer)
into a recorded check: the condition and the message are still evaluated, an exception in either
still fails the run, and a false condition is recorded, not raised. Everything else, including
asserts inside ``ftbook``, is unchanged.

    python tests/full_smoke.py CHAPTER.ipynb OUT.json     # with the stand-in's environment set

writes ``{"chapter", "status", "error", "wall_s", "asserts": {"held", "failed": [...]}}``.
Used by ``tests/test_full_chapters.py``.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from types import MappingProxyType

# Only sizes. Keys not named keep the ``full`` value; ``None`` ("all of the split") is kept where the
# stand-in's splits are small anyway, so that branch of the code runs as it would for a reader.
SMOKE_SIZES: dict[str, dict] = {
    "pipeline": dict(max_length=32, batch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, pretrain_steps=4, finetune_epochs=1),
    "background": dict(shots_per_class=8),
    "baselines": dict(lr_C=(1.0, 16.0), nb_alpha=(1.0, 0.1), char_ngrams=((1, 2),), word_ngrams=((1, 1),),
                      max_iter=200),
    "causal_lm": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                      intermediate_size=64, max_length=32, batch_size=4, steps=6, warmup_steps=2, log_every=2,
                      live_steps=2),
    "data": dict(max_length=64, batch_size=8, wordpiece_vocab=2000, bench_texts=32, n_unk_texts=200),
    "norms": dict(batch=2, seq=16, hidden=64, bench_repeats=2, demo_batch=16, bench_hidden=(32, 64),
                  deep_depth=4, deep_width=16, deep_steps=6, deep_train=200, deep_val=50),
    "transformer": dict(demo_hidden=16, bench_batch=4, bench_repeats=1),
    "faq": dict(max_length=32, batch_size=8, shift_train=48, shift_eval=24, shift_epochs=1, lr_train=48, lr_eval=24,
                lr_range_steps=16, lr_sweep_steps=4, overfit_train=16, overfit_eval=24, overfit_epochs=4,
                overfit_patience=1, seeds=2, dapt_steps=4, dapt_warmup=1, dapt_max_length=32, dapt_batch=4),
    "finetune": dict(max_length=64, batch_size=8, eval_batch_size=32, english_max_steps=4, chinese_max_steps=4,
                     epochs=1, compare_steps=4, search_max_length=32, search_steps=3),
    "instruct": dict(train_per_task=12, val_per_task=3, test_per_task=4, max_chars=40, max_words=40, max_length=256,
                     r=4, alpha=8, steps=4, batch_size=4, warmup_steps=1, max_new_tokens=4, eval_batch_size=8,
                     live_steps=2, live_batch_size=2, log_every=2),
    "label_budgets": dict(max_steps=[2, 2, 2, 2], lrs=[2e-05, 5e-05], seeds=[0, 1], evals=2, patience=1,
                          batch_size=8, max_length=64),  # the budgets stay: chapter 9 reads the 100/300/1000 rows
    "lora_experiment": dict(max_length=64, batch_size=8, eval_batch_size=32, max_steps=3, epochs=1, ranks=(1, 4),
                            seeds=(0, 1)),
    "optim": dict(n_train=400, n_eval=100, max_chars=32, steps=20, batch_size=16, embed_dim=16),
    "pretrain": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_length=64,
                     batch_size=8, steps=6, warmup_steps=2, log_every=2, live_steps=4),
    "midterm": dict(train_docs=100, max_length=64),
    "final": dict(train_docs=100, max_length=32),
    "serve": dict(max_batch=8, max_length=64, max_texts=16, bench_requests=16, bench_levels=(1, 2), bench_batch=4,
                  bench_max_seconds=10),
    "similarity": dict(articles=300, max_length=64, batch_size=16),  # enough for a headline to miss its body
    "tagging": dict(max_chars=64, train_sentences=200, eval_sentences=50, test_sentences=50, epochs=1,
                    batch_size=16),
    # a synthetic task, so it can be learned: chapter 7 reads which learning rates learned it
    "tricks": dict(vocab=16, seq_len=12, d_model=32, n_heads=4, n_layers=6, d_ff=64, batch=32, steps=80, warmup=25,
                   seeds=2),
}


def shrink_full(sections: dict) -> None:
    """Overlay :data:`SMOKE_SIZES` on the registered ``full`` sizes (in place; unknown keys refused)."""
    for name, sizes in SMOKE_SIZES.items():
        if name not in sections:
            continue
        full = dict(sections[name]["full"])
        unknown = sorted(set(sizes) - set(full))
        if unknown:
            raise KeyError(f"smoke sizes for section {name!r} name keys it does not have: {unknown}")
        sections[name]["full"] = MappingProxyType({**full, **sizes})


def install() -> None:
    """Make every later ``register_sizes`` (and the ones already made) use the smoke sizes.

    Called from the run's ``sitecustomize``: it waits for ``ftbook.config`` to be imported (an
    import hook), so a process that never imports ftbook pays nothing."""
    import importlib.abc
    import importlib.machinery

    def patch(config) -> None:
        original = config.register_sizes

        def register_sizes(section, *, tiny, full):
            original(section, tiny=tiny, full=full)
            shrink_full({section: config._SECTIONS[section]})

        register_sizes.__doc__, register_sizes.__wrapped__ = original.__doc__, original
        config.register_sizes = register_sizes
        shrink_full(config._SECTIONS)
        config.SMOKE_SIZES_APPLIED = True

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path, target=None):
            if fullname != "ftbook.config":
                return None
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is None or spec.loader is None:
                return spec
            exec_module = spec.loader.exec_module  # the loader of this one spec: wrap its method

            def exec_and_patch(module):
                exec_module(module)
                patch(module)

            spec.loader.exec_module = exec_and_patch
            return spec

    sys.meta_path.insert(0, Finder())


SITECUSTOMIZE = """\
import importlib.util as _u
_spec = _u.spec_from_file_location("ftbook_full_smoke", {path!r})
_mod = _u.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
_mod.install()
"""

# The first cell of the run, executed in the kernel before the chapter's own cells.
PRELUDE = """\
import ast as _ast, json as _json

_SMOKE_ASSERTS = {"held": 0, "failed": []}

def _smoke_assert(cond, msg, where):
    if cond:
        _SMOKE_ASSERTS["held"] += 1
    else:
        _SMOKE_ASSERTS["failed"].append({"where": where, "message": str(msg())[:300]})

class _SoftAsserts(_ast.NodeTransformer):
    cell = 0

    def visit_Assert(self, node):
        self.generic_visit(node)
        msg = node.msg if node.msg is not None else _ast.Constant(value=_ast.unparse(node.test)[:200])
        where = _ast.Constant(value=f"cell {_SoftAsserts.cell} line {node.lineno}")
        call = _ast.Call(func=_ast.Name("_smoke_assert", _ast.Load()),
                         args=[node.test, _ast.Lambda(_ast.arguments([], [], None, [], [], None, []), msg), where],
                         keywords=[])
        return _ast.copy_location(_ast.Expr(call), node)

get_ipython().ast_transformers.append(_SoftAsserts())

import ftbook.config as _config
assert getattr(_config, "SMOKE_SIZES_APPLIED", False), "the smoke sizes were not installed (sitecustomize)"
"""

REPORT = "print('SMOKE_ASSERTS ' + _json.dumps(_SMOKE_ASSERTS, ensure_ascii=False))"
CELL_INDEX = "_SoftAsserts.cell = {index}"


def run_chapter(path: Path, timeout: int = 900, chapter=None) -> dict:
    """Execute ``path`` (or the notebook ``chapter``, run in ``path``'s folder) in a fresh kernel
    with this process's environment; return the record."""
    import nbformat
    from nbclient import NotebookClient

    chapter = chapter if chapter is not None else nbformat.read(path, as_version=4)
    code = [(i, c) for i, c in enumerate(chapter.cells) if c.cell_type == "code"]
    cells = [nbformat.v4.new_code_cell(PRELUDE)]
    for i, cell in code:
        cells += [nbformat.v4.new_code_cell(CELL_INDEX.format(index=i)), cell]
    cells.append(nbformat.v4.new_code_cell(REPORT))
    nb = nbformat.v4.new_notebook(cells=cells, metadata=chapter.metadata)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    record = {"chapter": path.name, "status": "ok", "error": None, "asserts": None}
    start = time.perf_counter()
    with client.setup_kernel():
        client.execute_cell(cells[0], 0)
        try:
            for index in range(1, len(cells) - 1):
                client.execute_cell(cells[index], index)
        except Exception as exc:
            record["status"] = "failed"
            record["error"] = f"cell {code[(index - 1) // 2][0]}: " + "\n".join(str(exc).splitlines()[-40:])
        client.execute_cell(cells[-1], len(cells) - 1)
        text = "".join(o.get("text", "") for o in cells[-1].outputs if o.get("output_type") == "stream")
        line = next((ln for ln in text.splitlines() if ln.startswith("SMOKE_ASSERTS ")), None)
        record["asserts"] = json.loads(line[len("SMOKE_ASSERTS "):]) if line else None
    record["wall_s"] = round(time.perf_counter() - start, 1)
    return record


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python tests/full_smoke.py CHAPTER.ipynb OUT.json", file=sys.stderr)
        return 2
    try:
        record = run_chapter(Path(argv[0]).resolve())
    except Exception:
        record = {"chapter": Path(argv[0]).name, "status": "failed", "error": traceback.format_exc()[-4000:],
                  "asserts": None}
    Path(argv[1]).write_text(json.dumps(record, ensure_ascii=False, indent=1))
    print(json.dumps(record, ensure_ascii=False))
    return 0 if record["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
