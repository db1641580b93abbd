"""Answer checks: the scoring of every graded notebook cell that is not a `grade_part` cell.

A quiz number, a multiple choice, a config the student builds, the a3 checkpoint: each hidden test cell
calls one registered check by name, with the student's answer *values* as positional arguments and the
check's parameters as literal keywords::

    from autograder.nb import grade_answer
    grade_answer("quiz", NUM_TOKENS, question="num_tokens", image_size=32, patch_size=4)

Why a registry: under `nbgrader autograde` the student's own cells run in the same kernel and can replace
anything there (`autograder.quiz.grade`, IPython's AST transformers that drop asserts, torch). So the kernel
only *records* the values (`autograder.nb.grade_answer` writes them, as JSON, into an output of the cell),
and `autograder.nbgrader_plugin.RegradeHiddenCells` scores them again in the grader's process with the
check below. The check's name and parameters come from the cell's source, which nbgrader restored from the
gradebook before the kernel ran (the kernel cannot change them); the values come from the kernel, which is
fine: they are the student's answers. What the kernel says about them is never used.

A check is `check(values, params, points, folder, context) -> (score, feedback)`:
    values: the student's answers, decoded from JSON (None, bool, int, float, str, lists, dicts, and
        `{"__type__": name, "fields": {...}}` for a dataclass such as AugmentConfig);
    params: the literal keywords of the call in the cell's source;
    points: the cell's points; the check returns points earned (0 ≤ score ≤ points);
    folder: the handed-in files (the grader's snapshot, never what the kernel left behind);
    context: non-literal keywords, only in the kernel (e.g. the student's ViT class): the grader passes {}.
Feedback never states the correct answer.
"""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ANSWER_MIME = "application/vnd.vitcourse.answer+json"  # the output that carries the recorded values
CALL_NAME = "grade_answer"
CALL_RE = re.compile(r"\bgrade_answer\(")
TYPE_KEY = "__type__"
MAX_REPR = 200  # characters of an unencodable value's repr kept for the feedback


class AnswerCheckError(ValueError):
    """A grade_answer(...) call in a notebook's source that the grader cannot use (the course author's to fix)."""


# ---------------------------------------------------------------------------------------- values <-> JSON
def encode(value: Any, depth: int = 0) -> Any:
    """A JSON-able copy of a student's answer (runs in the kernel; types the checks do not take are tagged)."""
    if value is None or type(value) in (bool, str):
        return value
    if type(value) in (int, float):
        return value if not (type(value) is float and not math.isfinite(value)) else {TYPE_KEY: "float", "repr": repr(value)}
    if depth < 4 and type(value) in (list, tuple):
        return [encode(v, depth + 1) for v in value]
    if depth < 4 and type(value) is dict and all(type(k) is str for k in value):
        return {k: encode(v, depth + 1) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {TYPE_KEY: type(value).__name__,
                "fields": {f.name: encode(getattr(value, f.name), depth + 1) for f in dataclasses.fields(value)}}
    return {TYPE_KEY: type(value).__name__, "repr": repr(value)[:MAX_REPR]}


def type_name(value: Any) -> str:
    """The student-facing type of a decoded value ('int', 'AugmentConfig', 'Tensor' ...)."""
    if isinstance(value, dict) and TYPE_KEY in value:
        return str(value[TYPE_KEY])
    return type(value).__name__


def shown(value: Any) -> str:
    """A decoded value as the student wrote it, for feedback."""
    if isinstance(value, dict) and "repr" in value:
        return str(value["repr"])
    return repr(value)


def roundtrip(values: list) -> list:
    """What the grader will see of `values`: the kernel checks the same thing (no surprises at grading)."""
    return json.loads(json.dumps([encode(v) for v in values]))


# ---------------------------------------------------------------------------------------- the checks
@dataclass(frozen=True)
class Check:
    """One kind of graded answer."""

    name: str
    run: Callable[..., tuple[float, str]]
    values: int  # how many answer values the call passes (positional arguments after the name)
    key: Callable[[dict], Any] | None = None  # params -> the correct value, for a numeric answer (the leak check)


def _is_int(value) -> bool:
    return type(value) is int


def _quiz(values, params, points, folder, context):
    """A numeric answer graded by `autograder.quiz` (its question id and ViT config in the keywords)."""
    from autograder import quiz

    (answer,), params = values, dict(params)
    name = params.pop("name", "the answer")
    question = params.pop("question")
    if answer is None:
        return 0.0, f"{name} is not implemented yet: assign it in the cell above"
    if not _is_int(answer):
        return 0.0, f"{name} should be an int, got {type_name(answer)} {shown(answer)}"
    score, feedback = quiz.check_answer(question, answer, **params)
    return points * score, feedback


def _choice(values, params, points, folder, context):
    """A multiple choice: `choices` (the letters), `correct`, and a `hint` shown for a wrong letter."""
    (answer,) = values
    name, choices = params.get("name", "the answer"), tuple(params["choices"])
    if answer is None:
        return 0.0, f"{name} is not implemented yet: assign one of {', '.join(map(repr, choices))}"
    if answer not in choices:
        return 0.0, f"{name} must be one of {', '.join(map(repr, choices))}, got {shown(answer)}"
    if answer == params["correct"]:
        return float(points), f"{name}: correct"
    return 0.0, params.get("hint", f"{name}: not this one")


def _block_params_key(params: dict) -> int:
    from types import SimpleNamespace

    from coursecore.counts import count_block_parameters

    D = int(params["embed_dim"])
    cfg = SimpleNamespace(embed_dim=D, mlp_hidden_dim=int(D * params["mlp_ratio"]), qkv_bias=params.get("qkv_bias", True))
    return sum(count_block_parameters(cfg).values())


def _block_params(values, params, points, folder, context):
    """Parameters of one encoder Block(embed_dim, num_heads, mlp_ratio), counted in closed form."""
    (answer,) = values
    D = int(params["embed_dim"])
    expected = _block_params_key(params)
    if not _is_int(answer):
        return 0.0, f"BLOCK_PARAMS should be an int, got {type_name(answer)} {shown(answer)}"
    if answer == expected:
        return float(points), "BLOCK_PARAMS: correct"
    # The feedback never shows the count itself: it is the answer.
    return 0.0, (f"BLOCK_PARAMS = {answer:,} is not the number of parameters of a Block({D}, {params['num_heads']}): "
                 "add the weight and the bias of every layer (two LayerNorms, qkv, proj, fc1, fc2)")


def _augment(values, params, points, folder, context):
    """AUGMENT: an AugmentConfig with random crops, a flip of at most half the images, a modest cutout."""
    from data_utils import AugmentConfig

    (answer,) = values
    if answer is None:
        return 0.0, "AUGMENT is not implemented yet: build an AugmentConfig in the cell above"
    if not (isinstance(answer, dict) and answer.get(TYPE_KEY) == "AugmentConfig" and isinstance(answer.get("fields"), dict)):
        return 0.0, f"AUGMENT should be an AugmentConfig, got {type_name(answer)}"
    try:
        cfg = AugmentConfig(**answer["fields"])
    except (TypeError, ValueError) as err:
        return 0.0, f"AUGMENT is not a valid AugmentConfig: {err}"
    if not (cfg.crop_prob > 0 and cfg.crop_padding > 0):
        return 0.0, "random crops (shifts) are the most useful CIFAR augmentation"
    if not 0 < cfg.flip_prob <= params.get("max_flip", 0.5):
        return 0.0, "a mirrored CIFAR image keeps its class: flip, but at most half of the time"
    if not cfg.cutout_size <= params.get("max_cutout", 16):
        return 0.0, "a cutout larger than half the image removes the object itself"
    return float(points), "AUGMENT: a sensible CIFAR augmentation"


def _seeds_needed(values, params, points, folder, context):
    """SEEDS_NEEDED for a ±half_width interval given a pilot spread std (autograder/quiz.py)."""
    from autograder import quiz

    (answer,) = values
    if answer is None:
        return 0.0, "SEEDS_NEEDED is not implemented yet: assign it in the cell above"
    if isinstance(answer, dict):  # an unencodable value: its repr says what it was
        answer = shown(answer)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        score = quiz.grade_seeds_needed(answer, params["std"], params["half_width"], points=points)
    return float(score), out.getvalue().strip()


def _accuracy(values, params, points, folder, context):
    """The handed-in checkpoint's held-out accuracy (autograder/accuracy.py), from the handed-in file.

    In the grader the checkpoint is loaded into the reference ViT (as on Gradescope: no student code in
    the grader's process); in the kernel into the student's class (`vit_class=` in the call).
    """
    from autograder.accuracy import CHECKPOINT, grade_checkpoint

    vit_class = context.get("vit_class")
    if vit_class is None:
        from coursecore import impl

        vit_class = impl.reference().ViT.ViT
    result = grade_checkpoint(Path(folder) / CHECKPOINT, vit_class, points=points)
    return result.score, result.message


def _cnn_config(params: dict):
    """The network a cnn_count question is about: `model` with the CNN options the call names (num_classes, ...)."""
    from coursecore import counts as complexity

    return complexity.cnn_config(params["model"], **{k: params[k] for k in complexity.CNN_OPTIONS if k in params})


def _cnn_count_key(params: dict) -> int:
    from autograder import quiz
    from coursecore import counts as complexity

    if params["quantity"] == "folded_params":
        return quiz.folded_cnn_parameters(_cnn_config(params))
    if params["quantity"] == "conv_flops":
        c_in, c_out, k, H, W = (int(params[key]) for key in ("in_chans", "out_chans", "kernel_size", "height", "width"))
        return complexity.FLOPS_PER_MAC * c_in * c_out * k * k * H * W
    raise ValueError(f"cnn_count: unknown quantity {params['quantity']!r}")


def _quiz_key(params: dict) -> int:
    from autograder import quiz

    config = {k: v for k, v in params.items() if k not in ("name", "question")}
    return quiz.expected(params["question"], **config)


def _seeds_key(params: dict) -> int:
    from autograder import quiz

    return quiz.seeds_needed(params["std"], params["half_width"])


def _cnn_count(values, params, points, folder, context):
    """A count about the CNN assignment's networks, in closed form (vitcourse.analysis.complexity).

    `quantity`: 'folded_params' (parameters of `model` after folding its batch norms) or 'conv_flops' (forward
    FLOPs of one k×k 'same' convolution C_in -> C_out at H×W, one image, bias not counted, as FlopCounterMode).
    A recognised slip (the unfolded count, MACs for FLOPs, ...) is named; the correct value never is.
    """
    from autograder import quiz
    from coursecore import counts as complexity

    (answer,), params = values, dict(params)
    name = params.pop("name", "the answer")
    if answer is None:
        return 0.0, f"{name} is not implemented yet: assign it in the cell above"
    if not _is_int(answer):
        return 0.0, f"{name} should be an int, got {type_name(answer)} {shown(answer)}"
    quantity = params.pop("quantity")
    expected = _cnn_count_key({**params, "quantity": quantity})
    if quantity == "folded_params":
        cfg = _cnn_config(params)
        unfolded = complexity.count_cnn_parameters(cfg)["total"]
        bn = sum(layer.params for layer in complexity.cnn_layers(cfg) if layer.kind == "bn")
        slips = {unfolded: "this is the count before folding: each batch norm's 2·C_out parameters (weight and "
                           "bias) become the folded conv's C_out biases",
                 unfolded - bn: "the batch norms are gone but the folded convolutions need a bias: C_out each",
                 unfolded + bn // 2: "the batch norm parameters are still counted: after folding only the "
                                     "conv's new bias (C_out) is left of them"}
    elif quantity == "conv_flops":
        c_in, c_out, k, H, W = (int(params[key]) for key in ("in_chans", "out_chans", "kernel_size", "height", "width"))
        macs = c_in * c_out * k * k * H * W
        slips = {macs: "this is the count of multiply-adds (MACs): the question asks for FLOPs, 2 per multiply-add",
                 complexity.FLOPS_PER_MAC * c_in * c_out * k * k: "the count for one output position: a 'same' "
                 "convolution computes every one of the H·W positions",
                 complexity.FLOPS_PER_MAC * c_in * c_out * H * W: "k² is missing: each output sums over a k×k "
                 "window of every input channel"}
    else:
        raise ValueError(f"cnn_count: unknown quantity {quantity!r}")
    if answer == expected:
        return float(points), f"{name}: correct"
    if answer in slips:
        return 0.0, f"{name} = {answer:,}: {slips[answer]}"
    return 0.0, f"{name} = {answer:,} is not right: count layer by layer with the closed forms of section 4"


CHECKS: dict[str, Check] = {c.name: c for c in (
    Check("quiz", _quiz, 1, _quiz_key),
    Check("choice", _choice, 1),
    Check("block_params", _block_params, 1, _block_params_key),
    Check("augment", _augment, 1),
    Check("seeds_needed", _seeds_needed, 1, _seeds_key),
    Check("accuracy", _accuracy, 0),
    Check("cnn_count", _cnn_count, 1, _cnn_count_key),
)}


# ---------------------------------------------------------------------------------------- the cell's calls
@dataclass(frozen=True)
class Call:
    """One grade_answer(...) call of a cell's source."""

    check: str
    values: int  # positional answer values after the name
    params: dict  # literal keywords (trusted: from the source nbgrader restored)


def calls(source: str) -> list[Call]:
    """The grade_answer(...) calls in a cell's source; AnswerCheckError if one cannot be graded."""
    if not CALL_RE.search(source):
        return []
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise AnswerCheckError(f"the cell does not parse ({err}); it calls grade_answer") from None
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == CALL_NAME):
            continue
        if not node.args or not isinstance(node.args[0], ast.Constant) or node.args[0].value not in CHECKS:
            raise AnswerCheckError(f"grade_answer needs a registered check name first, one of {sorted(CHECKS)}")
        check = CHECKS[node.args[0].value]
        params = {}
        for kw in node.keywords:
            if kw.arg in ("points", "folder"):
                continue  # the grader takes the cell's points from its metadata, the files from its snapshot
            try:
                params[kw.arg] = ast.literal_eval(kw.value)
            except ValueError:
                continue  # not a literal: kernel-only context (e.g. vit_class=ViT.ViT), never read by the grader
        if len(node.args) - 1 != check.values:
            raise AnswerCheckError(f"grade_answer({check.name!r}, ...) takes {check.values} answer value(s), "
                                   f"the call passes {len(node.args) - 1}")
        found.append(Call(check.name, check.values, params))
    return found


def score(call: Call, values: list, points: float, folder: Path, context: dict | None = None) -> tuple[float, str]:
    """Points earned (clipped to [0, points]) and feedback for one call; a check that fails scores 0."""
    try:
        earned, feedback = CHECKS[call.check].run(values, call.params, points, Path(folder), context or {})
    except Exception as err:  # noqa: BLE001 - a malformed answer earns 0 with the reason, never a crash
        return 0.0, f"{call.params.get('name', call.check)}: could not be graded ({type(err).__name__}: {str(err)[:200]})"
    earned = float(earned) if isinstance(earned, (int, float)) and math.isfinite(earned) else 0.0
    return min(max(earned, 0.0), float(points)), feedback


def answer_key(call: Call):
    """The correct value of a numeric answer call (None for checks without one): what no release may hold."""
    key = CHECKS[call.check].key
    return key(dict(call.params)) if key is not None else None
