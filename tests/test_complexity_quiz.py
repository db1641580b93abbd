"""Autogradable complexity questions: right answers from built models, common slips named in the feedback."""
import math

import pytest
import torch

from autograder import quiz
from vitcourse.analysis.complexity import FLOPS_PER_MAC, flop_counter_flops

# Small, distinct sizes; a non-square image and an odd head count.
CONFIG = dict(image_size=(12, 8), patch_size=4, in_chans=2, embed_dim=15, num_heads=3, depth=2, mlp_ratio=2.0,
              num_classes=7)
B = 2


@pytest.fixture(scope="module")
def model(ref):
    return ref.ViT.ViT(**CONFIG).eval()


@pytest.fixture(scope="module")
def counted(model):
    """FlopCounterMode on the manual path, per image."""
    images = torch.randn(B, CONFIG["in_chans"], *model.config.image_hw)
    result = flop_counter_flops(model, images)
    return {name.split(".", 1)[-1]: flops // B for name, flops in result["by_module"].items()} | {
        "total": result["total"] // B}


def numel(module):
    return sum(p.numel() for p in module.parameters())


def test_correct_answers_equal_the_built_model(model, counted):
    block = model.blocks[0]
    oracles = {
        "num_tokens": model.forward_features(torch.randn(1, 2, 12, 8)).shape[1],
        "patch_embed_params": numel(model.patch_embed),
        "pos_embed_params": model.pos_embed.numel(),
        "block_params": numel(block),
        "total_params": numel(model),
        "attention_flops": counted["blocks.0.attn"] - counted["blocks.0.attn.qkv"] - counted["blocks.0.attn.proj"],
        "qkv_flops": counted["blocks.0.attn.qkv"],
        "mlp_flops": counted["blocks.0.mlp"],
        "block_flops": counted["blocks.0"],
        "total_flops": counted["total"],
        "total_macs": counted["total"] // FLOPS_PER_MAC,
        # assignment 6: what head-only and partial (the last two blocks, the final norm, the head) fine-tuning train
        "head_params": numel(model.head),
        "partial2_params": sum(numel(b) for b in list(model.blocks)[-2:]) + numel(model.norm) + numel(model.head),
    }
    assert set(oracles) == set(quiz.QUESTIONS)
    for question, value in oracles.items():
        assert quiz.expected(question, **CONFIG) == value, question
        score, feedback = quiz.check_answer(question, value, **CONFIG)
        assert score == quiz.FULL_CREDIT and feedback.startswith("Correct"), question


def test_numeric_types_and_float_round_off_are_accepted(model):
    value = numel(model.blocks[0])
    for answer in (value, float(value), torch.tensor(value), value * (1 + 1e-12)):
        assert quiz.check_answer("block_params", answer, **CONFIG)[0] == quiz.FULL_CREDIT
    assert quiz.check_answer("block_params", value + 1, **CONFIG)[0] == 0.0
    assert quiz.check_answer("block_params", value * 1.001, rtol=0.01, **CONFIG)[0] == quiz.FULL_CREDIT


def _slip_cases(model, counted):
    """Wrong answers derived by hand from the built model, with the words the feedback must contain."""
    block, D, K = model.blocks[0], CONFIG["embed_dim"], CONFIG["num_classes"]
    patches = model.config.num_patches
    N = patches + 1
    attention = counted["blocks.0.attn"] - counted["blocks.0.attn.qkv"] - counted["blocks.0.attn.proj"]
    without_cls_attention = FLOPS_PER_MAC * 2 * patches * patches * D
    return [
        ("block_params", numel(block) - block.attn.qkv.bias.numel(), "qkv projection's bias"),
        ("block_params", numel(block) - numel(block.norm1) - numel(block.norm2), "LayerNorm parameters are missing"),
        ("block_params", numel(block) - D - D, "scale *and* a shift"),
        ("block_params", sum(m.weight.numel() for m in (block.attn.qkv, block.attn.proj, block.mlp.fc1, block.mlp.fc2))
         + numel(block.norm1) + numel(block.norm2), "every bias is missing"),
        ("total_params", numel(model) - D, "class token"),
        ("total_params", numel(model) - model.head.bias.numel() - model.head.weight.numel(), "classification head"),
        ("total_params", numel(model) - numel(model.norm), "final LayerNorm"),
        ("pos_embed_params", patches * D, "the class token gets a position too"),
        ("num_tokens", patches, "N + 1 tokens"),
        ("attention_flops", attention // FLOPS_PER_MAC, "multiply-adds (MACs)"),
        ("attention_flops", attention // CONFIG["num_heads"], "one head"),
        ("attention_flops", attention // 2, "only q·kᵀ"),
        ("attention_flops", without_cls_attention, "number of patches"),
        ("total_flops", counted["total"] // FLOPS_PER_MAC, "multiply-adds (MACs)"),
        ("total_flops", counted["total"] - CONFIG["depth"] * attention, "torchinfo"),
        ("total_macs", counted["total"], "asks for multiply-adds"),
        ("total_flops", counted["total"] + FLOPS_PER_MAC * (N - 1) * D * K, "every token"),
        ("mlp_flops", counted["blocks.0.mlp.fc1"], "two MLP layers"),
    ]


def test_common_slips_get_partial_credit_and_named(model, counted):
    for question, answer, words in _slip_cases(model, counted):
        score, feedback = quiz.check_answer(question, answer, **CONFIG)
        assert score == quiz.SLIP_CREDIT, (question, answer, feedback)
        assert words in feedback, (question, feedback)


def test_two_slips_at_once_are_both_named(model, counted):
    attention = counted["blocks.0.attn"] - counted["blocks.0.attn.qkv"] - counted["blocks.0.attn.proj"]
    score, feedback = quiz.check_answer("attention_flops", attention // FLOPS_PER_MAC // CONFIG["num_heads"], **CONFIG)
    assert score == quiz.SLIP_CREDIT ** 2
    assert "multiply-adds (MACs)" in feedback and "one head" in feedback


def test_off_by_exactly_one_component_is_named(model):
    score, feedback = quiz.check_answer("total_params", numel(model) + numel(model.patch_embed), **CONFIG)
    assert score == 0.0 and "patch_embed" in feedback and "too high" in feedback


def test_feedback_never_gives_the_answer_away(model):
    correct = numel(model)
    for answer in (1, correct // 3, correct + 12345, 10 * correct, -4):
        score, feedback = quiz.check_answer("total_params", answer, **CONFIG)
        assert score == 0.0
        assert str(correct) not in feedback.replace(",", "") and f"{correct:,}" not in feedback


def test_every_declared_slip_changes_the_answer_and_has_feedback():
    for question_id, question in quiz.QUESTIONS.items():
        correct = quiz.expected(question_id, **CONFIG)
        for slip in question.slips:
            assert slip in quiz.SLIPS
            assert question.compute(quiz.complexity.vit_config(**CONFIG), frozenset([slip]), None) != correct, (
                question_id, slip)


def test_num_tokens_overrides_the_token_count():
    D = CONFIG["embed_dim"]
    assert quiz.expected("attention_flops", num_tokens=50, **CONFIG) == FLOPS_PER_MAC * 2 * 50 * 50 * D
    assert quiz.check_answer("attention_flops", 2 * 50 * 50 * D, num_tokens=50, **CONFIG)[0] == quiz.SLIP_CREDIT


@pytest.mark.parametrize("answer, words", [
    (None, "no answer yet"), ("6373732", "without quotes"), (True, "must be a number"), (math.nan, "finite"),
    ([1, 2], "must be a number"),
])
def test_non_numeric_answers_get_zero_and_a_hint(answer, words):
    score, feedback = quiz.check_answer("total_params", answer, **CONFIG)
    assert score == 0.0 and words in feedback


@pytest.mark.parametrize("call, error, words", [
    (lambda: quiz.check_answer("params_of_everything", 1), KeyError, "block_params"),
    (lambda: quiz.check_answer("total_params", 1, num_tokens=5), TypeError, "attention_flops"),
    (lambda: quiz.check_answer("attention_flops", 1, num_tokens=0), ValueError, "positive"),
    (lambda: quiz.check_answer("block_params", 1, embed_dim=250, num_heads=4), ValueError, "divisible"),
    (lambda: quiz.check_answer("block_params", 1, embed_size=250), TypeError, "embed_size"),
])
def test_instructor_mistakes_raise_clear_errors(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_grade_for_nbgrader(model, capsys):
    assert quiz.grade("block_params", numel(model.blocks[0]), points=3, **CONFIG) == 3
    assert quiz.grade("block_params", numel(model.blocks[0]) - CONFIG["embed_dim"] * 3, points=3, **CONFIG) == 1.5
    with pytest.raises(AssertionError, match="Not quite"):
        quiz.grade("block_params", 1, points=3, **CONFIG)
    out = capsys.readouterr()
    assert "Correct" in out.out and "Almost" in out.out and out.err == ""  # nbgrader fails cells that write stderr
