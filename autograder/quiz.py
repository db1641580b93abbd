"""The answer keys of the course's numeric questions: the grader's alone, never released.

ViT complexity questions (below), the CNN assignment's folded parameter count, and the seeds a confidence
interval needs. A release ships no function that computes a graded answer (coursetools/release.py's leak
check refuses one: no copy of this file's lines, no definition of its functions). What follows is the ViT part.

Autogradable numeric questions on ViT complexity, with feedback that names the component that is off.

Shape legend: B batch, C channels, H/W image height/width, P patch size, N tokens, D embedding,
h heads, d head dim, K classes.

The analysis notebook asks for closed-form counts ("parameters of one block", "FLOPs of attention at N
tokens") and grades them in hidden cells::

    from autograder import quiz
    score, feedback = quiz.check_answer("block_params", answer, embed_dim=256, num_heads=4)
    quiz.grade("block_params", answer, points=2, embed_dim=256, num_heads=4)   # nbgrader cell

Every question is computed from a ViTConfig (any ViTConfig field may be passed as a keyword; the rest
keep their defaults). Token-based FLOP questions also accept `num_tokens=N` ("at N tokens").

Wrong answers are compared with the answers that common slips produce — a forgotten bias, LayerNorm
counted without its shift, a position table without the class token's row, MACs instead of FLOPs, N
patches instead of N + 1 tokens, one head instead of h — alone and in pairs, and the feedback names
the slip. An answer off by exactly one component is told which one. The correct value is never
printed, so feedback can be shown to students.

Public API: QUESTIONS (id -> Question), SLIPS (name -> feedback), check_answer, grade, expected.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable

from scipy import stats as _scipy_stats

from coursecore import counts as complexity

CONFIDENCE = complexity.CONFIDENCE



FULL_CREDIT = 1.0
SLIP_CREDIT = 0.5  # an answer right except for one named slip earns half; two slips a quarter
MAX_SLIPS = 2  # combinations of up to this many slips are recognised
ORDER_OF_MAGNITUDE = 10  # feedback says "more than 10× off" rather than a ratio that reveals the answer
DEFAULT_RTOL = 1e-9  # counts are integers: accept only float round-off unless the notebook loosens it

# Common slips and what the feedback says about them (the component that is off, and a hint).
SLIPS = {
    "no_qkv_bias": "the qkv projection's bias is missing — attn.qkv = Linear(D, 3D) has 3D biases",
    "no_biases": "every bias is missing — each Linear (and the patch-embedding conv) adds one bias per output",
    "no_layernorm": "the LayerNorm parameters are missing — each LayerNorm has 2D (a scale and a shift)",
    "layernorm_scale_only": "LayerNorm is counted with D parameters — it has a scale *and* a shift: 2D",
    "no_final_norm": "the final LayerNorm (`norm`, 2D) after the last block is missing",
    "no_cls_token": "the class token (cls_token, D parameters) is missing",
    "pos_without_cls": "pos_embed is counted for the patches only — the class token gets a position too: (N + 1)·D",
    "no_head": "the classification head (Linear(D, K): D·K + K) is missing",
    "one_block": "only one encoder block is counted — multiply the per-block count by depth",
    "mlp_hidden_is_D": "the MLP's hidden width is taken as D — it is mlp_ratio·D",
    "qkv_as_one_projection": "qkv is counted as one D×D projection — q, k and v each need one: D×3D",
    "macs_not_flops": "this is the count of multiply-adds (MACs) — the question asks for FLOPs, 2 per multiply-add",
    "flops_not_macs": "this is the count in FLOPs — the question asks for multiply-adds (MACs), half as many",
    "tokens_without_cls": "N is taken as the number of patches — with a class token the encoder sees N + 1 tokens",
    "per_head": "only one head is counted — all h heads do this work (h·N²·d = N²·D)",
    "scores_only": "only q·kᵀ is counted — softmax(·)·v costs as much again",
    "no_attention_products": "q·kᵀ and softmax·v are missing (the count a module-hook tool like torchinfo gives)",
    "one_mlp_layer": "only one of the two MLP layers is counted — fc1 (D -> M) and fc2 (M -> D)",
    "head_per_token": "the head is applied to every token — it sees one pooled vector per image",
    "partial_one_block": "only one block is counted — partial mode trains the last two blocks: 2 × the per-block count",
}


@dataclass(frozen=True)
class Question:
    """One numeric question: what is asked, how the answer is computed, which slips to recognise."""

    description: str  # the question as the notebook states it
    unit: str  # 'parameters', 'FLOPs', 'MACs' or 'tokens'
    how: str  # the closed form, for instructors (never shown to students by this module)
    compute: Callable  # compute(cfg, slips: frozenset[str], num_tokens: int | None) -> int
    slips: tuple  # names in SLIPS that this question recognises
    components: Callable  # components(cfg, num_tokens) -> {name: value}: for "off by exactly one component"


def _linear(n_in, n_out, bias):
    return n_in * n_out + (n_out if bias else 0)


def _norm(cfg, s):
    if "no_layernorm" in s:
        return 0
    return cfg.embed_dim if "layernorm_scale_only" in s else 2 * cfg.embed_dim


def _hidden(cfg, s):
    return cfg.embed_dim if "mlp_hidden_is_D" in s else cfg.mlp_hidden_dim


def _block_params(cfg, s, _n=None):
    D, M, bias = cfg.embed_dim, _hidden(cfg, s), "no_biases" not in s
    qkv_out = D if "qkv_as_one_projection" in s else 3 * D
    qkv = _linear(D, qkv_out, bias and cfg.qkv_bias and "no_qkv_bias" not in s)
    return 2 * _norm(cfg, s) + qkv + _linear(D, D, bias) + _linear(D, M, bias) + _linear(M, D, bias)


def _pos_rows(cfg, s):
    if cfg.pos_embed != "learnable":
        return 0
    return cfg.num_tokens - (cfg.num_prefix_tokens if "pos_without_cls" in s else 0)


def _total_params(cfg, s, _n=None):
    D, bias = cfg.embed_dim, "no_biases" not in s
    total = _linear(cfg.patch_dim, D, bias)
    total += D if cfg.pool == "token" and "no_cls_token" not in s else 0
    total += _pos_rows(cfg, s) * D
    total += (1 if "one_block" in s else cfg.depth) * _block_params(cfg, s)
    total += 0 if "no_final_norm" in s else _norm(cfg, s)
    if cfg.num_classes and "no_head" not in s:
        total += _linear(D, cfg.num_classes, bias)
    return total


PARTIAL_BLOCKS = 2  # assignment 6's partial mode: the last two blocks, the final norm and the head


def _head_params(cfg, s, _n=None):
    return _linear(cfg.embed_dim, cfg.num_classes, "no_biases" not in s)


def _partial_params(cfg, s, _n=None):
    blocks = (1 if "partial_one_block" in s else PARTIAL_BLOCKS) * _block_params(cfg, s)
    norm = 0 if "no_final_norm" in s else _norm(cfg, s)
    head = 0 if "no_head" in s else _head_params(cfg, s)
    return blocks + norm + head


def _tokens(cfg, s, n):
    if n is not None:
        return n
    return cfg.num_patches if "tokens_without_cls" in s else cfg.num_tokens


def _flops(s, macs):
    """MACs -> FLOPs, unless the slip is giving MACs."""
    return macs if "macs_not_flops" in s else complexity.FLOPS_PER_MAC * macs


def _attention_macs(cfg, s, n):
    N = _tokens(cfg, s, n)
    macs = (1 if "scores_only" in s else 2) * N * N * cfg.embed_dim
    if "no_attention_products" in s:
        return 0
    return macs // cfg.num_heads if "per_head" in s else macs


def _block_macs(cfg, s, n):
    N, D, M = _tokens(cfg, s, n), cfg.embed_dim, _hidden(cfg, s)
    qkv = N * D * (D if "qkv_as_one_projection" in s else 3 * D)
    mlp = N * D * M * (1 if "one_mlp_layer" in s else 2)
    return qkv + _attention_macs(cfg, s, n) + N * D * D + mlp


def _total_macs(cfg, s, _n=None):
    head_rows = _tokens(cfg, s, None) if "head_per_token" in s else 1
    blocks = (1 if "one_block" in s else cfg.depth) * _block_macs(cfg, s, None)
    return cfg.num_patches * cfg.patch_dim * cfg.embed_dim + blocks + head_rows * cfg.embed_dim * cfg.num_classes


def _named(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "total"}


def _block_flop_components(cfg, n):
    return {k: complexity.FLOPS_PER_MAC * v for k, v in complexity.count_block_macs(cfg, n).items()}


def _total_flop_components(cfg, n):
    parts = {k: complexity.FLOPS_PER_MAC * v for k, v in _named(complexity.count_macs(cfg)).items()}
    parts.update({f"all blocks' {k}": cfg.depth * v for k, v in _block_flop_components(cfg, None).items()})
    return parts


QUESTIONS: dict[str, Question] = {
    "num_tokens": Question(
        "How many tokens does the encoder process per image?", "tokens",
        "(H / P)·(W / P) patches + 1 class token (pool='token')",
        lambda cfg, s, n: _tokens(cfg, s, None), ("tokens_without_cls",),
        lambda cfg, n: {"class token": cfg.num_prefix_tokens}),
    "patch_embed_params": Question(
        "How many parameters does the patch embedding have?", "parameters",
        "P²·C·D weights + D biases",
        lambda cfg, s, n: _linear(cfg.patch_dim, cfg.embed_dim, "no_biases" not in s), ("no_biases",),
        lambda cfg, n: {"bias of the patch embedding": cfg.embed_dim}),
    "pos_embed_params": Question(
        "How many parameters does the learnable position embedding have?", "parameters",
        "(N_patches + 1)·D with a class token",
        lambda cfg, s, n: _pos_rows(cfg, s) * cfg.embed_dim, ("pos_without_cls",),
        lambda cfg, n: {"class token's position row": cfg.embed_dim}),
    "block_params": Question(
        "How many parameters does one encoder block have?", "parameters",
        "norm1 2D + qkv (3D² + 3D) + proj (D² + D) + norm2 2D + fc1 (D·M + M) + fc2 (M·D + D), M = mlp_ratio·D",
        _block_params,
        ("no_qkv_bias", "no_biases", "no_layernorm", "layernorm_scale_only", "mlp_hidden_is_D", "qkv_as_one_projection"),
        lambda cfg, n: complexity.count_block_parameters(cfg)),
    "total_params": Question(
        "How many trainable parameters does the whole ViT have?", "parameters",
        "patch embedding + cls_token + pos_embed + depth·block + final norm + head",
        _total_params,
        ("no_qkv_bias", "no_biases", "no_layernorm", "layernorm_scale_only", "no_final_norm", "no_cls_token",
         "pos_without_cls", "no_head", "one_block", "mlp_hidden_is_D", "qkv_as_one_projection"),
        lambda cfg, n: _named(complexity.count_parameters(cfg))),
    "attention_flops": Question(
        "How many FLOPs do the attention products (q·kᵀ and softmax·v, all heads) of one block cost per image?",
        "FLOPs", "2 products × N²·D MACs × 2 FLOPs/MAC = 4·N²·D",
        lambda cfg, s, n: _flops(s, _attention_macs(cfg, s, n)),
        ("macs_not_flops", "tokens_without_cls", "per_head", "scores_only"),
        lambda cfg, n: {"softmax·v product": complexity.FLOPS_PER_MAC * complexity.count_block_macs(cfg, n)["attn.weighted_sum"]}),
    "qkv_flops": Question(
        "How many FLOPs does the qkv projection of one block cost per image?", "FLOPs", "2·N·D·3D",
        lambda cfg, s, n: _flops(s, _tokens(cfg, s, n) * cfg.embed_dim * (
            cfg.embed_dim if "qkv_as_one_projection" in s else 3 * cfg.embed_dim)),
        ("macs_not_flops", "tokens_without_cls", "qkv_as_one_projection"),
        lambda cfg, n: {}),
    "mlp_flops": Question(
        "How many FLOPs does the MLP of one block cost per image?", "FLOPs", "2 layers × N·D·M MACs × 2",
        lambda cfg, s, n: _flops(s, _tokens(cfg, s, n) * cfg.embed_dim * _hidden(cfg, s) * (
            1 if "one_mlp_layer" in s else 2)),
        ("macs_not_flops", "tokens_without_cls", "mlp_hidden_is_D", "one_mlp_layer"),
        lambda cfg, n: {}),
    "block_flops": Question(
        "How many FLOPs does one encoder block cost per image (matrix products only)?", "FLOPs",
        "2·(N·D·3D + 2·N²·D + N·D² + 2·N·D·M)",
        lambda cfg, s, n: _flops(s, _block_macs(cfg, s, n)),
        ("macs_not_flops", "tokens_without_cls", "per_head", "scores_only", "no_attention_products",
         "mlp_hidden_is_D", "qkv_as_one_projection", "one_mlp_layer"),
        _block_flop_components),
    "total_flops": Question(
        "How many forward FLOPs does the whole ViT cost per image (matrix products only)?", "FLOPs",
        "2·(N_patches·P²C·D + depth·block MACs + D·K)",
        lambda cfg, s, n: _flops(s, _total_macs(cfg, s)),
        ("macs_not_flops", "tokens_without_cls", "per_head", "scores_only", "no_attention_products", "one_block",
         "mlp_hidden_is_D", "head_per_token"),
        lambda cfg, n: _total_flop_components(cfg, n)),
    "total_macs": Question(
        "How many forward multiply-adds (MACs) does the whole ViT cost per image?", "MACs",
        "N_patches·P²C·D + depth·block MACs + D·K",
        lambda cfg, s, n: _total_macs(cfg, s) * (complexity.FLOPS_PER_MAC if "flops_not_macs" in s else 1),
        ("flops_not_macs", "tokens_without_cls", "per_head", "scores_only", "no_attention_products", "one_block",
         "mlp_hidden_is_D", "head_per_token"),
        lambda cfg, n: _named(complexity.count_macs(cfg))),
    "head_params": Question(
        "How many parameters learn in head-only fine-tuning (a new K-class head)?", "parameters", "D·K + K",
        _head_params, ("no_biases",), lambda cfg, n: {"head bias": cfg.num_classes}),
    "partial2_params": Question(
        "How many parameters learn in partial fine-tuning of the last two blocks (blocks, final norm, head)?",
        "parameters", "2·block + 2D (final norm) + D·K + K",
        _partial_params,
        ("partial_one_block", "no_final_norm", "no_head", "no_qkv_bias", "no_biases", "layernorm_scale_only",
         "mlp_hidden_is_D", "qkv_as_one_projection"),
        lambda cfg, n: {"final norm": 2 * cfg.embed_dim, "head": _head_params(cfg, frozenset()),
                        "one block": _block_params(cfg, frozenset())}),
}
TOKEN_QUESTIONS = ("attention_flops", "qkv_flops", "mlp_flops", "block_flops")  # accept num_tokens=N


def _question(question_id: str) -> Question:
    try:
        return QUESTIONS[question_id]
    except KeyError:
        raise KeyError(f"unknown question {question_id!r}: the questions are {', '.join(QUESTIONS)}") from None


def _setup(question_id: str, config: dict):
    question = _question(question_id)
    config = dict(config)
    num_tokens = config.pop("num_tokens", None)
    if num_tokens is not None:
        if question_id not in TOKEN_QUESTIONS:
            raise TypeError(f"question {question_id!r} is about the whole model: num_tokens applies only to "
                            f"{', '.join(TOKEN_QUESTIONS)}")
        if not isinstance(num_tokens, int) or num_tokens < 1:
            raise ValueError(f"num_tokens must be a positive integer, got {num_tokens!r}")
    return question, complexity.vit_config(**config), num_tokens


def expected(question_id: str, **config) -> int:
    """The correct answer (for instructors and tests; the feedback never shows it)."""
    question, cfg, n = _setup(question_id, config)
    return question.compute(cfg, frozenset(), n)


def _close(a: float, b: float, rtol: float) -> bool:
    return a == b or math.isclose(a, b, rel_tol=rtol, abs_tol=0.0)


def _how_far(value: float, correct: int) -> str:
    """'about 12%' or 'about 3×' — coarse on purpose, so the feedback does not give the answer away."""
    if correct == 0 or value <= 0:
        return "far"
    ratio = value / correct
    if 0.5 <= ratio <= 2:
        percent = abs(ratio - 1) * 100
        return "less than 1%" if percent < 1 else f"about {percent:.0f}%"
    factor = max(ratio, 1 / ratio)
    return f"about {factor:.0f}×" if factor <= ORDER_OF_MAGNITUDE else f"more than {ORDER_OF_MAGNITUDE}×"


def check_answer(question_id: str, answer, rtol: float = DEFAULT_RTOL, **config) -> tuple[float, str]:
    """Grade a numeric answer against the library's closed form.

    Args:
        question_id: a key of QUESTIONS.
        answer: the student's number (int or float; numpy scalars and 0-d tensors work too).
        rtol: relative tolerance (default: exact up to float round-off).
        **config: ViTConfig fields (e.g. embed_dim=256, num_heads=4); num_tokens=N for TOKEN_QUESTIONS.

    Returns:
        (score in [0, 1], feedback). 1.0 for the right answer; SLIP_CREDIT per recognised slip
        (0.5 for one, 0.25 for two); 0.0 otherwise. The feedback names the slip or the component that
        is off, never the correct value.
    """
    question, cfg, n = _setup(question_id, config)
    if answer is None:
        return 0.0, f"{question.description} — no answer yet (got None); give a number of {question.unit}."
    if isinstance(answer, (str, bool)):
        return 0.0, (f"{question.description} — the answer must be a number of {question.unit}, got "
                     f"{type(answer).__name__} {answer!r} (write it without quotes, e.g. 1_234_567).")
    try:
        value = float(answer.item() if hasattr(answer, "item") else answer)
    except (TypeError, ValueError):
        return 0.0, f"{question.description} — the answer must be a number, got {type(answer).__name__} {answer!r}."
    if not math.isfinite(value):
        return 0.0, f"{question.description} — the answer must be a finite number, got {value}."
    correct = question.compute(cfg, frozenset(), n)
    if _close(value, correct, rtol):
        return FULL_CREDIT, f"Correct: {question.description.rstrip('?')} — well done."

    for size in range(1, MAX_SLIPS + 1):
        # Several slips can give the same number (a missing cls_token and a pos_embed without its row
        # are both D short): name every explanation of the smallest size.
        matches = [combo for combo in itertools.combinations(question.slips, size)
                   if _close(value, question.compute(cfg, frozenset(combo), n), rtol)
                   and question.compute(cfg, frozenset(combo), n) != correct]
        if matches:
            reasons = " — or — ".join("; and ".join(SLIPS[name] for name in combo) for combo in matches)
            return SLIP_CREDIT**size, f"Almost: your count matches the one where {reasons}."

    off = value - correct
    direction = "too high" if off > 0 else "too low"
    for name, part in question.components(cfg, n).items():
        if part and _close(abs(off), part, rtol):
            return 0.0, (f"Not quite: your answer is {direction} by exactly the {name} term — "
                         f"{'count it once, not twice' if off > 0 else 'did you leave it out'}?")
    hint = "; ".join(question.components(cfg, n)) or question.unit
    return 0.0, (f"Not quite: your answer is {_how_far(value, correct)} {direction}. "
                 f"Derive it term by term ({hint}) and check the number of tokens, the biases and the "
                 f"FLOPs-per-multiply-add convention.")


def grade(question_id: str, answer, points: float = 1.0, rtol: float = DEFAULT_RTOL, **config) -> float:
    """For an nbgrader test cell: print the feedback and return the points earned.

    nbgrader takes a number as the cell's last value as partial credit and an exception as zero, so
    a wrong answer raises AssertionError carrying the feedback, and a partly right one returns
    points × score. Feedback goes to stdout (nbgrader treats anything on stderr as a failure).
    """
    score, feedback = check_answer(question_id, answer, rtol=rtol, **config)
    print(feedback)
    if score == 0.0:
        raise AssertionError(feedback)
    return points * score


# ---- the CNN assignment ---------------------------------------------------------------------------------------

def folded_cnn_parameters(cfg) -> int:
    """Parameters after `ConvNet.fold_batch_norms()`: each conv + BN pair becomes a conv with a bias, so
    the BN's 2·C_out become the conv's C_out biases (the running statistics were buffers all along)."""
    return sum(layer.params if layer.kind != "bn" else layer.params // complexity.BN_PARAMS_PER_CHANNEL
               for layer in complexity.cnn_layers(cfg))


# ---- how many seeds -----------------------------------------------------------------------------------------

def seeds_needed(std: float, half_width: float, confidence: float = CONFIDENCE, max_n: int = 10_000) -> int:
    """The fewest seeds n whose t interval t(n-1)·std/√n is at most `half_width` wide on each side.

    `std` is the spread of single runs measured in a pilot grid (same unit as `half_width`).
    """
    if std < 0 or half_width <= 0:
        raise ValueError(f"need std >= 0 and half_width > 0, got std={std}, half_width={half_width}")
    for n in range(2, max_n + 1):
        # The two-sided Student-t critical value for n values (scipy's, as vitcourse.analysis.stats).
        if float(_scipy_stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * std / math.sqrt(n) <= half_width:
            return n
    raise ValueError(f"more than {max_n} seeds would be needed for ±{half_width} with a spread of {std}")


def seeds_needed_normal(std: float, half_width: float, confidence: float = CONFIDENCE) -> int:
    """The common slip: the normal quantile (1.96) instead of Student's t, n = ceil((z·std / half_width)²)."""
    from scipy import stats as scipy_stats

    z = float(scipy_stats.norm.ppf(0.5 + confidence / 2))
    return max(2, math.ceil((z * std / half_width) ** 2))


def grade_seeds_needed(answer, std: float, half_width: float, points: float = 2.0,
                       confidence: float = CONFIDENCE) -> float:
    """Grade "how many seeds for a ±half_width interval given a spread of std": print feedback, return points.

    Full points for the t-based answer; half for the normal-quantile slip (the interval is then too narrow
    for a handful of seeds). The correct number is never printed.
    """
    correct = seeds_needed(std, half_width, confidence)
    if not isinstance(answer, (int, float)) or isinstance(answer, bool) or answer != int(answer):
        print(f"SEEDS_NEEDED should be a whole number of seeds, got {answer!r}")
        return 0.0
    answer = int(answer)
    if answer == correct:
        print("SEEDS_NEEDED: correct")
        return float(points)
    if answer == seeds_needed_normal(std, half_width, confidence) and answer != correct:
        print("SEEDS_NEEDED: this is the count with the normal quantile 1.96; with a few seeds the spread itself "
              "is estimated, so the interval uses Student's t with n - 1 degrees of freedom, which is wider. "
              "Find the smallest n with t(n-1)·s/√n <= the half-width.")
        return points / 2
    side = "few" if answer < correct else "many"
    print(f"SEEDS_NEEDED: {answer} seeds are too {side}: find the smallest n with t(n-1)·s/√n <= the half-width "
          f"(t from scipy.stats.t.ppf(0.975, n - 1))")
    return 0.0
