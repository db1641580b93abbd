"""Run grading cases on one implementation; the only autograder code that executes next to student code.

Shape legend (the same in every file of the course):
    B batch, C channels, H/W image height/width, P patch size, N tokens,
    D embedding (embed_dim), h heads (num_heads), d head dim (D / h), K classes.

This file is used twice, with the same code path on both sides:

* in the grader's process, `run_case(reference, case)` computes the expected outputs with the reference;
* in the sandbox, `python -I -S runner.py JOBDIR` imports the student's modules the parts need (`transformer.py`
  and `ViT.py`, or `finetune.py`, or `cnn.py`),
  runs the cases the grader wrote to `JOBDIR/cases.pt`, and writes the outputs (plain tensors only) to
  `JOBDIR/out/<part>.pt`. Progress goes to `JOBDIR/out/status.jsonl`, one JSON object per line, so that
  the grader knows which part was running when the process died or hung.

It imports the standard library, torch and, for the parts declared in coursecore/parts/<module>.py (their
cases say which), that package: the sandbox copies coursecore/ into the job's lib/ beside this file. It never sees
the expected outputs: the grader compares. A part's own run (`run(mods, case, h)` of its grader region) uses the
harness below (`harness()`): this file's helpers, the functions captured before the student's import, and the
tracing and patching a part needs to grade one piece of a model in isolation.
"""
from __future__ import annotations

import errno
import json
import os
import sys
import types

# The student modules, in import order, come in job.json from coursecore/registry.py (this file is copied
# alone into the sandbox, so it does not import the registry).
# What a Python error message relayed to the grader may keep (first line, this many characters).
MESSAGE_CHARS = 400


class StudentError(Exception):
    """The student's code did something the template does not allow (wrong return type, renamed class)."""


# --------------------------------------------------------------------------------------------- helpers
def _torch():
    import torch  # noqa: PLC0415 - imported late: the sandbox sets sys.path first
    return torch


def _need(module, name: str, filename: str):
    """module.name, or a StudentError that says the template's name is missing."""
    reason = getattr(module, "AUTOGRADER_FALLBACK", None)
    if reason:
        raise StudentError(f"{filename} could not be imported, so this could not run ({reason})")
    obj = module
    for piece in name.split("."):
        try:
            obj = getattr(obj, piece)
        except AttributeError:
            raise StudentError(f"{filename} has no `{name}`: keep the names of the template "
                               f"(was it renamed or deleted?)") from None
    return obj


def _tensor(value, what: str):
    torch = _torch()
    if type(value) is not torch.Tensor:
        raise StudentError(f"{what} returned a {type(value).__name__}, not a torch.Tensor")
    return value


def _leaf(t):
    return t.detach().clone().requires_grad_(True)


def _load(module, state: dict, what: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()
        raise StudentError(f"the parameters of {what} do not match the template ({' '.join(first[1:3])[:300]}); "
                           "keep the layers that __init__ builds, with their names") from None


def _grads(total, named: dict) -> dict:
    """Gradients of the scalar `total` w.r.t. every tensor in `named`; a missing one is left out."""
    torch = _torch()
    names = list(named)
    grads = torch.autograd.grad(total, [named[n] for n in names], allow_unused=True)
    return {f"grad:{n}": g for n, g in zip(names, grads) if g is not None}


def _forward_backward(call, inputs: dict, params: dict, cotangent, what: str, repeat: bool = False,
                      permuted=None) -> dict:
    """Run `call()` (which uses the leaves in inputs/params), then backpropagate a fixed cotangent.

    `repeat` adds a second call ("out@2"; eval mode must be deterministic) and `permuted`, a call on the
    input with its tokens permuted ("out@perm"; for the permutation-equivariance property).
    """
    out = _tensor(call(), what)
    result = {"out": out}
    with _torch().no_grad():
        if repeat:
            result["out@2"] = _tensor(call(), what)
        if permuted is not None:
            result["out@perm"] = _tensor(permuted(), what)
    if out.shape != cotangent.shape:
        # The grader reports the shape (and reads the values, which may be right in the wrong layout).
        return result
    if out.requires_grad:
        result.update(_grads((out * cotangent.to(out.dtype)).sum(), {**inputs, **params}))
    return result


def _permuted(module, x, t: dict):
    """A call of `module` on x with its tokens permuted by t["perm"] (cases without a mask only)."""
    if "perm" not in t:
        return None
    return lambda: module(x.detach()[:, t["perm"]])


def _detach(value):
    torch = _torch()
    if isinstance(value, (tuple, list)):
        value = value[0] if value else None
    return value.detach().clone() if isinstance(value, torch.Tensor) else None  # a Parameter too


def _trace(module, names, store: dict) -> list:
    """Record the first input and output of each named submodule as `trace:<name>.in` / `.out`."""
    handles = []
    for name in names:
        try:
            sub = module.get_submodule(name)
        except AttributeError:
            continue

        def hook(mod, args, out, name=name):
            for key, value in ((f"trace:{name}.in", args), (f"trace:{name}.out", out)):
                if key not in store and _detach(value) is not None:
                    store[key] = _detach(value)
        handles.append(sub.register_forward_hook(hook))
    return handles


def _recording(fn, key: str, store: dict):
    """`fn` that also records its first output under `trace:<key>`, and its later ones as `<key>#i`."""
    def wrapped(*args, **kwargs):
        out = fn(*args, **kwargs)
        name, i = f"trace:{key}", 1
        while name in store:
            name, i = f"trace:{key}#{i}", i + 1
        if _detach(out) is not None:
            store[name] = _detach(out)
        return out
    return wrapped


class _Patch:
    """Set attributes for the duration of a case (substitutions, recording wrappers), then restore them."""

    def __init__(self):
        self.saved = []

    def set(self, obj, name, value):
        had = name in vars(obj) if hasattr(obj, "__dict__") else False
        self.saved.append((obj, name, had, vars(obj).get(name) if had else None))
        setattr(obj, name, value)

    def restore(self):
        for obj, name, had, value in reversed(self.saved):
            if had:
                setattr(obj, name, value)
            else:
                try:
                    delattr(obj, name)
                except AttributeError:
                    pass
        self.saved.clear()


def _module_leaves(module) -> dict:
    return {f"param:{n}": p for n, p in module.named_parameters()}


# --------------------------------------------------------------------------------------------- cases
def run_case(mods, case: dict) -> dict:
    """Run one case on an implementation (`mods.transformer`, `mods.ViT`); return named output tensors."""
    if "part" in case:  # a part declared whole in coursecore/parts/<module>.py (the job's lib/ in the sandbox)
        from coursecore.parts import GRADER

        return GRADER[case["part"]].run(mods, case, harness())
    raise ValueError(f"unknown case op {case['op']!r}")


def harness() -> types.SimpleNamespace:
    """What a declared part's run(mods, case, h) may use: the runner's own helpers and its trusted captures."""
    return types.SimpleNamespace(torch=_torch, need=_need, leaf=_leaf, load=_load, tensor=_tensor, grads=_grads,
                                 forward_backward=_forward_backward, module_leaves=_module_leaves, trusted=_trusted,
                                 trace=_trace, recording=_recording, Patch=_Patch, permuted=_permuted,
                                 StudentError=StudentError)


def describe_error(err: BaseException) -> str:
    """One line a student can act on: the exception type and the first line of its message."""
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    if isinstance(err, StudentError):
        return first[:MESSAGE_CHARS]
    return f"{type(err).__name__}: {first}"[:MESSAGE_CHARS]


# torch's functions the runner itself uses after the student's modules are imported, captured before: a student
# file may replace torch.save, Tensor.clone or Module.state_dict at import; the runner's results do not change.
TRUSTED: dict = {}


class Guard:
    """What a student file may patch at import or during a call — torch's functions, Tensor's and Module's
    methods, the builtins, this runner's own helpers, the declared parts' runs and oracles (coursecore/parts/) and
    their registry — put back as they were before every case.

    So a file that replaces torch.equal, torch.allclose, Tensor.__eq__ or torch.testing.assert_close gets what its
    honest twin gets: its own code and the runner both run with the originals.
    """

    def __init__(self, objects):
        self.saved = [(obj, dict(_namespace(obj))) for obj in objects]
        self.trusted = dict(TRUSTED)

    def restore(self) -> None:
        for obj, saved in self.saved:
            current = _namespace(obj)
            is_class = isinstance(obj, type)
            if is_class:  # a method added to a class (Tensor.__eq__ over TensorBase's) is taken away again;
                for key in [k for k in current if k not in saved]:  # a module keeps what imports added to it
                    try:
                        delattr(obj, key)
                    except (AttributeError, TypeError):
                        pass
            for key, value in saved.items():
                if current.get(key, _MISSING) is not value:
                    try:
                        setattr(obj, key, value) if is_class else current.__setitem__(key, value)
                    except (AttributeError, TypeError):
                        pass
        TRUSTED.clear()
        TRUSTED.update(self.trusted)


_MISSING = object()


def _namespace(obj) -> dict:
    """What the guard keeps of `obj`: a module's or a class's attributes; a registry (a dict), its entries."""
    return obj if type(obj) is dict else vars(obj)


def guard(torch) -> Guard:
    import builtins

    import torch.nn.functional as F
    import torch.testing

    # The declared parts (the job's lib/), imported before the student's files: their runs, oracles and registry
    # are put back before every case like this runner's own helpers.
    from coursecore.parts import GRADER

    runner_globals = sys.modules[__name__] if __name__ in sys.modules else None
    objects = [torch, torch.Tensor, torch.nn.Module, torch.nn.Parameter, F, torch.testing, builtins]
    core = [m for name, m in sorted(sys.modules.items())
            if m is not None and (name == "coursecore" or name.startswith("coursecore."))]
    return Guard(objects + ([runner_globals] if runner_globals is not None else []) + core
                 + [GRADER, *GRADER.values()])


def capture_trusted(torch) -> None:
    TRUSTED.update(save=torch.save, clone=torch.Tensor.clone, detach=torch.Tensor.detach,
                   contiguous=torch.Tensor.contiguous, cpu=torch.Tensor.cpu, state_dict=torch.nn.Module.state_dict)


def _trusted() -> dict:
    if not TRUSTED:  # the grader's own process (expected outputs): captured on first use, nothing to distrust
        capture_trusted(_torch())
    return TRUSTED


def clean_outputs(outputs: dict) -> dict:
    """Detached, contiguous, plain tensors: the only thing that leaves the sandbox."""
    torch = _torch()
    T = _trusted()
    clean = {}
    for name, value in outputs.items():
        if type(value) is torch.Tensor:
            clean[name] = T["clone"](T["contiguous"](T["cpu"](T["detach"](value)))) if value.device.type != "meta" else value
    return clean


# --------------------------------------------------------------------------------------------- sandbox
def _hide(paths) -> None:
    """Cover each path with an empty tmpfs (directory) or /dev/null (file) in this mount namespace."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    ms_bind, ms_rdonly = 4096, 1
    for path in paths:
        if os.path.isdir(path):
            rc = libc.mount(b"tmpfs", path.encode(), b"tmpfs", ms_rdonly, b"size=4k")
        else:
            rc = libc.mount(b"/dev/null", path.encode(), None, ms_bind, None)
        if rc != 0 and ctypes.get_errno() != errno.ENOENT:  # a path that vanished needs no hiding
            raise OSError(ctypes.get_errno(), f"cannot hide {path}")


def main(jobdir: str) -> int:
    with open(os.path.join(jobdir, "job.json")) as fh:
        job = json.load(fh)
    if job.get("hide"):
        _hide(job["hide"])
    sys.dont_write_bytecode = True
    sys.path[:] = [job["student_dir"], *job["sys_path"]]
    os.chdir(job["student_dir"])
    out_dir = os.path.join(jobdir, "out")
    status = open(os.path.join(out_dir, "status.jsonl"), "a", buffering=1)

    def say(**event):
        status.write(json.dumps(event) + "\n")
        status.flush()

    torch = _torch()
    torch.set_num_threads(1)
    capture_trusted(torch)
    cases = torch.load(os.path.join(jobdir, "cases.pt"), weights_only=True)
    originals = guard(torch)
    say(event="ready")

    loaded = {}
    for name in job["modules"]:
        if name in job["skip"]:
            reason = job["skip"][name]
        else:
            say(event="import", module=name)
            try:
                loaded[name] = __import__(name)
                originals.restore()  # whatever the import patched
                say(event="imported", module=name)
                continue
            except BaseException as err:  # noqa: BLE001 - SystemExit and KeyboardInterrupt included
                reason = describe_error(err)
                if isinstance(err, SyntaxError) and "codec can't decode" in str(err.msg):
                    reason = (f"{name}.py is not UTF-8 text ({err.msg.split(': ', 1)[-1][:120]}): save it as UTF-8 "
                              "(your editor's 'Save with encoding'), or retype the characters it cannot read")
                elif isinstance(err, SyntaxError):
                    reason = f"SyntaxError: {err.msg} ({name}.py, line {err.lineno})"
                say(event="import_failed", module=name, reason=reason)
                sys.modules.pop(name, None)
        if name == "transformer":  # torch's layers under the template's names, so that ViT.py still imports
            from coursecore.parts.oracles import fallback_transformer

            loaded[name] = sys.modules["transformer"] = fallback_transformer(reason)
        else:
            loaded[name] = types.SimpleNamespace(AUTOGRADER_FALLBACK=reason)
    mods = types.SimpleNamespace(**loaded)

    for part in job["parts"]:
        say(event="start", part=part)
        results = []
        for case in cases[part]:
            # Global state a student file may have changed at import time: every case starts the same.
            originals.restore()
            torch.manual_seed(0)
            torch.set_default_dtype(torch.float32)
            torch.set_grad_enabled(True)
            try:
                results.append({"ok": True, "outputs": clean_outputs(run_case(mods, case))})
            except BaseException as err:  # noqa: BLE001 - the student's error is this case's result
                results.append({"ok": False, "error": describe_error(err)})
        originals.restore()
        TRUSTED["save"](results, os.path.join(out_dir, f"{part}.pt"))
        say(event="done", part=part)
    status.close()
    return 0


if __name__ == "__main__":
    os._exit(main(sys.argv[1]))
