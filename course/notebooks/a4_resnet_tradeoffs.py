# %% [markdown]
# # Assignment 4: a ResNet baseline and the trade-offs
#
# Is the ViT of assignment 3 a good model for CIFAR-10? The honest way to answer is a **baseline**
# trained with the same pipeline — same data, same split, same augmentation, same optimiser schedule —
# and a **sweep**: several ViT sizes next to ResNet-18, with their parameters, FLOPs, measured time per
# epoch and accuracy in one table. Then you explain why each configuration wins or loses.

# %% setup

# %%
import dataclasses
import json
from pathlib import Path

import matplotlib.pyplot as plt
import torch

import ViT
from vitcourse.course import augment_choice, nbchecks
from vitcourse.analysis import complexity, sweep
from vitcourse.course.colab import load_course_data, todo_guard
from vitcourse.analysis.plots import plot_history
from vitcourse.training.recipes import build_model, default_recipe
from vitcourse.training.runtime import fast_mode
from vitcourse.training.train import evaluate, train

torch.manual_seed(0);  # the same random numbers on every run (';' hides the generator it returns)

# %% [markdown]
# ## 1. ResNet-18 with the same pipeline
#
# ResNet-18 in its CIFAR form (a 3×3 stem without the max-pool, so the 32×32 input is not shrunk to 8×8
# at once) has 11 M parameters: far more than our ViT, yet it trains fast because convolutions are cheap
# per parameter and their priors fit images. The recipe switches to SGD with Nesterov momentum, the
# classic choice for ResNets; everything else is the pipeline of assignment 3.
#
# The data: a copy you already have is read from `DATA_DIR` (or `VITCOURSE_DATA_ROOT`), as in assignment 1.

# %%
DATA = "cifar10"  # the same dataset as assignment 3
# Your own copy of CIFAR, read as it is (no download): the folder holding cifar-10-batches-py/ (CIFAR-100:
# cifar-100-python/), e.g. "/content/drive/MyDrive/data". None: $VITCOURSE_DATA_ROOT if set, else download once.
DATA_DIR = None
SEED = 0
splits = load_course_data(DATA, seed=SEED, data_dir=DATA_DIR)

# %%
resnet_config, resnet_train = default_recipe(splits.name, "resnet18", num_classes=splits.num_classes, in_chans=splits.in_chans)
# The same augmentation as your ViT: your assignment-1 choice when it was saved (the message says which).
resnet_train = dataclasses.replace(resnet_train, augment=augment_choice.load(splits.name, resnet_train.augment))
print(resnet_config, resnet_train, sep="\n")

# %%
RESNET_CHECKPOINT = Path("resnet_checkpoint.pt")  # hand this file in with the notebook
resnet = build_model("resnet18", resnet_config)
resnet_result = None
if fast_mode() and RESNET_CHECKPOINT.exists():
    resnet.load_state_dict(torch.load(RESNET_CHECKPOINT, map_location="cpu", weights_only=True)["model"])
    print(f"fast mode: using the handed-in {RESNET_CHECKPOINT}")
else:
    resnet_result = train(resnet, splits, resnet_train, checkpoint_dir=Path("runs") / f"resnet18_{splits.name}")
    torch.save({"model": resnet.state_dict(), "config": resnet_config, "data": splits.name}, RESNET_CHECKPOINT)
    plot_history(resnet_result.history, title=f"ResNet-18 on {splits.name}", augment=resnet_train.augment)
    plt.show()
resnet_test = evaluate(resnet, splits.test_images, splits.test_labels, mean=splits.mean, std=splits.std)
print(f"ResNet-18 test accuracy {resnet_test.accuracy:.1%}")

# %% [markdown]
# ## 2. The sweep
#
# Four ViT configurations — patch 4 or 8, depth 4 or 8, width 256, 4 heads — and ResNet-18. The table
# gives the closed-form parameters and FLOPs (`vitcourse.analysis.complexity`), the time per epoch measured on this
# machine (a few training steps, extrapolated to an epoch of 45,000 images), and the test accuracy after
# a short training run of each model (`SWEEP_EPOCHS`; on a T4 the whole sweep takes about 20 minutes).

# %%
VIT_GRID = dict(patch_size=(4, 8), depth=(4, 8), embed_dim=(256,), num_heads=(4,))
SWEEP_EPOCHS = 1 if fast_mode() else 10  # short runs: enough to rank the models, not to converge
specs = [s for s in sweep.assignment_specs(num_classes=(10,), **VIT_GRID) if s.model != "resnet18_imagenet"]
rows = sweep.run_sweep(specs, measure_models=False)  # closed forms: parameters and FLOPs
print(sweep.to_markdown(rows))

# %% [markdown]
# Now measure the time per epoch of every configuration with *your* ViT, train each one briefly on the
# real data with the same recipe, and add the accuracy column. (In fast mode this is a couple of steps on
# a few images: the numbers are then meaningless, the code path is the one that matters.)

# %%
def sweep_model(spec, num_classes, image_size, in_chans):
    """Your ViT (or ResNet-18) for one row of the sweep."""
    if spec.model == "vit":
        options = dict(spec.options, image_size=image_size, in_chans=in_chans)
        if image_size % options["patch_size"]:
            options["patch_size"] = 2  # the offline digits are 8x8: keep a grid of patches
        return ViT.ViT(complexity.vit_config(num_classes=num_classes, **options))
    return build_model("resnet18", dict(resnet_config, num_classes=num_classes, in_chans=in_chans))


settings = sweep.MeasureSettings(timed_steps=1, warmup_steps=0, batch_size=2) if fast_mode() else sweep.MeasureSettings()
# While graded, only the cheapest model runs through the loop: the code path is checked, not the numbers.
cheapest = min(specs, key=lambda s: s.complexity()["gflops"])
with todo_guard("the ViT", "ViT.py"):
    for spec, row in zip(specs, rows):
        if fast_mode() and spec != cheapest:
            continue
        C, H, _ = spec.image_shape  # timing at CIFAR size, whatever data this session loaded
        row.update(sweep.measure(sweep_model(spec, spec.num_classes, H, C), spec.image_shape, settings, spec.num_classes))
        recipe = default_recipe(splits.name, "vit" if spec.model == "vit" else "resnet18")[1]
        model = sweep_model(spec, splits.num_classes, splits.image_size, splits.in_chans)
        train(model, splits, dataclasses.replace(recipe, epochs=SWEEP_EPOCHS, progress=False))
        row["accuracy"] = 100 * evaluate(model, splits.test_images, splits.test_labels, mean=splits.mean, std=splits.std).accuracy
        print(f"{spec.name}: {row['epoch_time_s']:.0f} s/epoch, test accuracy {row['accuracy']:.1f}% after {SWEEP_EPOCHS} epoch(s)")
    print(sweep.to_markdown(rows))
    Path("sweep.json").write_text(json.dumps([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
                                             indent=1, default=str))

# %% [markdown]
# **Plots.** Accuracy against cost: where does each model sit?

# %%
if any(row.get("accuracy") is not None for row in rows):
    sweep.plot_tradeoffs(rows)
    plt.show()
else:
    print("the sweep has no accuracy column yet (the ViT is not written): nothing to plot")

# %% [markdown]
# ## 3. Counting (autograded)
#
# Use the closed forms of assignment 5's kind (by hand or with Python arithmetic — not by building the
# model or calling `vitcourse.analysis.complexity`) for the ViT with `image_size=32, patch_size=8, embed_dim=256,
# depth=8, num_heads=4, mlp_ratio=4`, 10 classes, class token, learnable positions:
#
# * `P8_PARAMS`: its trainable parameters;
# * `P8_FLOPS`: its forward FLOPs per image (matrix products only, 2 FLOPs per multiply-add: patch
#   embedding, every block's qkv, attention products, projection and MLP, and the head).

# %% solution=counting
P8_PARAMS = None
P8_FLOPS = None
### BEGIN SOLUTION
_D, _L, _M, _K, _N = 256, 8, 1024, 10, (32 // 8) ** 2
_block = 2 * 2 * _D + (3 * _D * _D + 3 * _D) + (_D * _D + _D) + (_D * _M + _M) + (_M * _D + _D)
P8_PARAMS = (8 * 8 * 3 * _D + _D) + _D + (_N + 1) * _D + _L * _block + 2 * _D + (_D * _K + _K)
_block_macs = (_N + 1) * (3 * _D * _D + _D * _D + 2 * _D * _M) + 2 * (_N + 1) ** 2 * _D
P8_FLOPS = 2 * (_N * 8 * 8 * 3 * _D + _L * _block_macs + _D * _K)
### END SOLUTION

# %% tests=test_p8_params points=2
nbchecks.check_answered("P8_PARAMS", P8_PARAMS, int)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_answer
grade_answer("quiz", P8_PARAMS, points=2, name="P8_PARAMS", question="total_params", image_size=32, patch_size=8, embed_dim=256,
             depth=8, num_heads=4)
### END HIDDEN TESTS

# %% tests=test_p8_flops points=2
nbchecks.check_answered("P8_FLOPS", P8_FLOPS, int)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_answer
grade_answer("quiz", P8_FLOPS, points=2, name="P8_FLOPS", question="total_flops", image_size=32, patch_size=8, embed_dim=256,
             depth=8, num_heads=4)
### END HIDDEN TESTS

# %% [markdown]
# ## 4. Is a difference real? An ablation over seeds
#
# A classic ViT homework trains two variants once each and concludes "ReLU performed much better than tanh"
# from 42.3% vs 34.2%. But a single run of a small ViT moves by a point or more with its seed (initial
# weights, data order, augmentation). Here you train a small grid on the five-class CIFAR-10 subset
# `[1, 3, 5, 7, 9]` (automobile, cat, dog, horse, truck) — position embedding learnable vs 2-D sin-cos, GELU
# vs tanh — on three seeds each, with one recipe and one budget (`vitcourse.analysis.ablate`; the same as the command
# `vitcourse ablate`). The table gives each variant's mean, spread and 95% interval, and every variant is
# compared with the first **paired by seed** (same seed, same data order: the seed's luck cancels).
#
# Budget: `ABLATION_EPOCHS` epochs per run. The CIFAR recipe's target on a T4 (50 epochs of 45,000 images in
# 10 minutes, assignment 3) means about 6 s per epoch on the 22,500 training images of five classes, so
# one 10-epoch run is about a minute and the grid (4 variants × 3 seeds) about 15 minutes (an estimate: see
# docs/ablations.md). The runs are saved under `ablation/`; a re-run after a disconnect skips the finished ones.

# %%
from vitcourse.analysis import ablate, stats

ABLATION_CLASSES = (1, 3, 5, 7, 9)
ABLATION_GRID = {"pos_embed": ["learnable", "sincos2d"], "act": ["gelu", "tanh"]}
ABLATION_SEEDS = [0, 1] if fast_mode() else [0, 1, 2]
ABLATION_EPOCHS = 1 if fast_mode() else 10
ablation_settings = ablate.Settings(
    data=DATA, epochs=ABLATION_EPOCHS, classes=ABLATION_CLASSES, vit=ViT,
    loader=lambda seed, classes: load_course_data(DATA, classes=classes, seed=seed, data_dir=DATA_DIR))
ablation_results = []
with todo_guard("the ViT", "ViT.py"):
    variants = ablate.expand(ABLATION_GRID)
    if fast_mode():  # while graded, two variants check the code path; the numbers are not the point
        variants = [variants[0], variants[-1]]
    ablation_results = ablate.run_grid(variants, ABLATION_SEEDS, ablation_settings, Path("ablation"))
    print(Path("ablation", ablate.TABLE_MD).read_text())

# %% [markdown]
# **What the position embeddings learned.** For each trained variant, tile (i, j) shows the cosine similarity
# of patch (i, j)'s position embedding with every other patch, next to the fixed 1-D and 2-D sin-cos tables
# of assignment 1. A learnable table starts as noise: any structure in it was learned from the data.

# %%
if ablation_results:
    ablate.plot_position_similarity(ablation_results, Path("ablation"), vit=ViT)
    plt.show()
else:
    print("no ablation runs yet (the ViT is not written): nothing to plot")

# %% [markdown]
# **How many seeds?** A pilot grid measured a standard deviation of `PILOT_STD = 1.5` points of test accuracy
# between seeds of one variant. How many seeds does a variant need for the 95% interval of its mean accuracy
# to be at most ±1 point (`HALF_WIDTH`)? Assign the whole number to `SEEDS_NEEDED` (compute it, e.g. with
# `scipy.stats.t`; not with `vitcourse.analysis.stats`).

# %% solution=seeds_needed
PILOT_STD, HALF_WIDTH = 1.5, 1.0
SEEDS_NEEDED = None
### BEGIN SOLUTION
from scipy.stats import t as _t

SEEDS_NEEDED = next(n for n in range(2, 1000) if _t.ppf(0.975, n - 1) * PILOT_STD / n ** 0.5 <= HALF_WIDTH)
### END SOLUTION

# %% tests=test_seeds_needed points=2
nbchecks.check_answered("SEEDS_NEEDED", SEEDS_NEEDED, int)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_answer
grade_answer("seeds_needed", SEEDS_NEEDED, points=2, std=1.5, half_width=1.0)
### END HIDDEN TESTS

# %% [markdown] answer=q_ablation points=3
# **Question.** (a) Using your table: which differences are distinguishable at this budget, and which are
# not? (b) Why can a single run per variant mislead, and why compare variants paired by seed? (c) What did
# the learnable position embeddings learn, judging by the similarity maps, compared with the 2-D sin-cos table?
#
# ### BEGIN SOLUTION
# **Model answer.** (a) Quotes the table's sentences: a difference whose 95% interval excludes 0 is
# distinguishable (typically tanh vs GELU at short budgets is not, or is small), others are not; with 3 seeds
# the t quantile is 4.3, so intervals are wide. (b) Seed-to-seed spread of a small ViT is about a point or
# more; two single runs differ by that much by chance, so a 1–2 point gap (or even 8 points at a very short,
# unstable budget) can be noise; pairing by seed removes the variance the variants share (same split and
# data order), so the interval of the difference is narrower than comparing two independent means.
# (c) The learned maps show nearby patches similar and a row/column structure emerging (a blurry cross or
# blob around each patch), like the 2-D sin-cos table but noisier; with few epochs they stay partly noise.
#
# **Mark scheme (3 points).** 1 per part: (a) reads intervals correctly (excludes 0 vs contains 0), citing
# the student's numbers; (b) run-to-run noise + why pairing helps; (c) locality / row-column structure in the
# learned maps, compared with the fixed table, honest about noise.
# ### END SOLUTION

# %% [markdown]
# ## 5. Why each configuration wins or loses

# %% [markdown] answer=q_tradeoffs points=4
# **Question.** Using your table and plots: (a) why does patch 4 cost about four times the FLOPs of patch
# 8 with the same parameters, and what does it buy? (b) What does depth 8 vs 4 change? (c) Why is
# ResNet-18, with several times more parameters than the ViTs, fast and accurate on CIFAR-10? (d) Which
# model would you deploy for CIFAR-10 on a T4, and why?
#
# ### BEGIN SOLUTION
# **Model answer.** (a) Patch 4 gives 64 tokens instead of 16: every linear layer runs on 4× the tokens
# (4× FLOPs) and attention on 16× the pairs, while the weights do not depend on N; finer patches keep
# spatial detail and are usually clearly more accurate on 32×32 images. (b) Depth doubles parameters and
# FLOPs per image and time per epoch; with short training it gains little and can underfit the budget.
# (c) Convolutions share weights over positions and build in locality, so ResNet-18 reaches >90% in few
# epochs; its parameters are many but its FLOPs per parameter are efficient on GPUs (cuDNN), and its prior
# fits small images. (d) ResNet-18 (best accuracy per minute on CIFAR-10) unless pre-training or a larger
# dataset is available, citing the student's measured numbers.
#
# **Mark scheme (4 points).** 1 per part: (a) tokens ∝ 1/P², linear layers ∝ N, attention ∝ N²,
# parameters independent of N; (b) cost doubles, accuracy gain small/none at short budgets; (c) inductive
# bias + efficient convolutions; (d) a justified choice that uses the student's own table.
# ### END SOLUTION

# %% [markdown]
# ## References
#
# * He et al., *Deep Residual Learning for Image Recognition*, 2016.
# * Dosovitskiy et al., *An Image Is Worth 16x16 Words*, 2021 (compute vs accuracy at scale).
# * Steiner et al., *How to train your ViT? Data, Augmentation, and Regularization in Vision Transformers*, 2021.
