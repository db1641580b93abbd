"""Edit a `.py` file, re-run a cell: the student's modules are reloaded before the cell runs.

IPython's `%autoreload` would do this, but the IPython that Colab pins (7.34) imports `imp` in its
autoreload extension, and `imp` is gone since Python 3.12: `%load_ext autoreload` fails on Colab today
(googlecolab/colabtools#5758). This module does the one thing the course needs, the same way on every
IPython from 7 to 9:

* after every cell, it notes the content of the student modules that cell imported (the `.py` files that
  sit directly in the work folder: `transformer.py`, `ViT.py`, `finetune.py`, `cnn.py`, or a helper);
* before every cell, it compares each noted file with its content on disk; if one changed, it reloads
  every noted module, the ones a module imports first (`ViT` after `transformer`), and points the
  notebook's names at the new functions and classes (`from ViT import patchify` keeps working);
* a file that no longer compiles is reported (file, line, error) and its old version is kept, so one typo
  does not stop the notebook; the next cell tries again.

Objects made before the edit (a model built in an earlier cell) keep their old code: re-run the cell that
builds them. Files are compared by content, not modification time: Google Drive stores times to the
second, and a quick edit must not be missed.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Optional

_WATCHER: Optional["Watcher"] = None


def _digest(path: Path) -> Optional[str]:
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest()
    except OSError:
        return None


class Watcher:
    """Reloads the modules of `folder` whose file changed; one per kernel (see `watch`)."""

    def __init__(self, folder: Path, namespace: Optional[dict] = None, log=print):
        self.folder = Path(folder).resolve()
        self.namespace = namespace  # the notebook's globals: names imported from a reloaded module are rebound
        self.log = log
        self.seen: dict[str, str] = {}  # module name -> sha1 of the source it was loaded from

    def _modules(self) -> dict[str, ModuleType]:
        """The loaded modules whose source file sits directly in the watched folder."""
        out = {}
        for name, mod in list(sys.modules.items()):
            file = getattr(mod, "__file__", None)
            if not file or not file.endswith(".py"):
                continue
            try:
                if Path(file).resolve().parent == self.folder:
                    out[name] = mod
            except OSError:
                continue
        return out

    def note(self, *_args) -> None:
        """post_run_cell: remember the content of every student module imported so far."""
        for name, mod in self._modules().items():
            if name not in self.seen:
                digest = _digest(Path(mod.__file__))
                if digest:
                    self.seen[name] = digest

    def check(self, *_args) -> list[str]:
        """pre_run_cell: reload if a noted file changed on disk; return the names reloaded."""
        modules = self._modules()
        changed = [n for n, d in self.seen.items() if n in modules and _digest(Path(modules[n].__file__)) not in (d, None)]
        if not changed:
            return []
        reloaded = []
        for name in _import_order(modules, set(self.seen)):
            mod = modules[name]
            path = Path(mod.__file__)
            digest = _digest(path)
            old = dict(vars(mod))
            cache = importlib.util.cache_from_source(str(path))
            try:
                os.remove(cache)  # a same-size edit within the same second would otherwise reuse the old bytecode
            except OSError:
                pass
            try:
                importlib.reload(mod)
            except Exception as err:  # noqa: BLE001 - a typo in the student's file: say where, keep the old one
                vars(mod).update(old)
                sys.modules[name] = mod
                self.log(_describe(path, err), file=sys.stderr)
                continue
            self.seen[name] = digest
            reloaded.append(name)
            self._rebind(name, old, mod)
        if reloaded:
            self.log("reloaded " + ", ".join(f"{n}.py" for n in reloaded if n in changed) + " (changed on disk)"
                     + ("" if set(reloaded) <= set(changed) else
                        f", and {', '.join(f'{n}.py' for n in reloaded if n not in changed)} that use it"))
        return reloaded

    def _rebind(self, name: str, old: dict, mod: ModuleType) -> None:
        """Point the notebook's names that held the module's old functions and classes at the new ones."""
        if self.namespace is None:
            return
        by_id = {id(v): k for k, v in old.items() if getattr(v, "__module__", None) == name}
        for key, value in list(self.namespace.items()):
            attr = by_id.get(id(value))
            if attr is not None and hasattr(mod, attr):
                self.namespace[key] = getattr(mod, attr)


def _import_order(modules: dict[str, ModuleType], names: set[str]) -> list[str]:
    """`names` ordered so that a module comes after the watched modules it refers to (ViT after transformer)."""
    deps = {}
    for name in names:
        if name not in modules:
            continue
        refs = set()
        for value in vars(modules[name]).values():
            other = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
            if other in names and other != name:
                refs.add(other)
        deps[name] = refs
    order: list[str] = []

    def visit(n: str, path: tuple = ()) -> None:
        if n in order or n in path:
            return
        for d in sorted(deps.get(n, ())):
            visit(d, path + (n,))
        order.append(n)

    for n in sorted(deps):
        visit(n)
    return order


def _describe(path: Path, err: BaseException) -> str:
    """`ViT.py, line 42: SyntaxError: ...`: where the student's file broke, in one line, and what happens."""
    line = getattr(err, "lineno", None) if isinstance(err, SyntaxError) else None
    if line is None:
        frames = [f for f in traceback.extract_tb(err.__traceback__) if Path(f.filename).name == path.name]
        line = frames[-1].lineno if frames else None
    where = f"{path.name}, line {line}" if line else path.name
    first = (str(err).splitlines() or [""])[0]
    return (f"{where}: {type(err).__name__}: {first}. The notebook keeps using your previous version of "
            f"{path.name} until it loads again: fix it, save, and re-run this cell.")


def watch(folder, shell=None) -> Optional[Watcher]:
    """Reload the modules of `folder` when their file changes, before each cell (idempotent: one watcher).

    Returns the watcher, or None outside IPython (a plain script has no cells to reload before)."""
    global _WATCHER
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return None
        shell = get_ipython()
    if shell is None:
        return None
    if _WATCHER is not None:  # the setup cell was run again: replace the old hooks, never add a second pair
        for event, fn in (("pre_run_cell", _WATCHER.check), ("post_run_cell", _WATCHER.note)):
            try:
                shell.events.unregister(event, fn)
            except ValueError:
                pass
    watcher = Watcher(folder, namespace=shell.user_ns)
    if _WATCHER is not None and _WATCHER.folder == watcher.folder:
        watcher.seen = dict(_WATCHER.seen)
    shell.events.register("pre_run_cell", watcher.check)
    shell.events.register("post_run_cell", watcher.note)
    watcher.note()
    _WATCHER = watcher
    return watcher
