# %% [markdown]
# # Assignment 8: why a ViT needs data, measured — data scaling, distillation from a CNN, attention distance
#
# Assignments 3 and 4 found a ViT trained from scratch on CIFAR-10 behind a ResNet-18, and assignment 6 found a
# pretrained ViT far ahead of both. The ViT paper's explanation is *data*: a transformer has weak priors about
# images (no locality, no translation equivariance built in) and must learn them, which takes many images. This
# assignment measures that claim instead of repeating it:
#
# * **data scaling**: the ViT and the ResNet-18 trained on growing subsets of the training set, several seeds
#   each, with 95% intervals (the ViT paper's Fig. 3 and 4, at the scale of one GPU);
# * **distillation** (DeiT, Touvron et al., 2021): a *distillation token* beside the class token learns to predict
#   what a trained ResNet-18 predicts. Does a CNN teacher's bias close part of the gap on small data?
# * **attention distance** (the ViT paper's Fig. 7): how far, in pixels, each head of each layer looks; do the
#   early layers of your trained ViT attend locally, like a convolution, and does a pretrained ViT?
# * **position embeddings**: what a pretrained ViT's learned positions encode, beside yours.
#
# In **`deit.py`** you write the distillation token's forward pass (`DistilledViT.forward`), the hard- and
# soft-label distillation losses and `mean_attention_distance`; the library trains, measures and plots with *your*
# functions (`vitcourse.training.distill`, `vitcourse.analysis.data_scaling`). The plain ViT is assignment 3's
# ViT (built by timm: its parameters and outputs are those of your `ViT.py`, tests/test_timm_parity.py).
# On Colab with a GPU the data is CIFAR-10 (the budget is in section 3); offline, and whenever the notebook is
# graded, the same code runs on the embedded 8×8 digits: the numbers are smaller, the code path is the same.

# %% setup

# %%
import matplotlib.pyplot as plt
import torch

import deit
from vitcourse.analysis import data_scaling as S
from vitcourse.analysis import features
from vitcourse.course import nbchecks
from vitcourse.course.colab import load_course_data, todo_guard
from vitcourse.training import distill
from vitcourse.training.runtime import fast_mode

torch.manual_seed(0);  # the same random numbers on every run (';' hides the generator it returns)

# %% [markdown]
# ## 1. The distillation token
#
# DeiT adds a second learned token to the ViT's input. The encoder sees `[class token, distillation token,
# patches]`, each with its own position embedding; after the last block and the final norm, `head` reads the class
# token and `head_dist` the distillation token. In training the two heads give two outputs, one for each term of the
# loss (section 2); at test time DeiT averages their logits. The layers are built for you in `DistilledViT.__init__`
# (timm's names, so timm's `VisionTransformerDistilled` loads your weights); write **`DistilledViT.forward`**.

# %% tests=test_distilled_vit
nbchecks.check_part("deit.DistilledViT.forward")
### BEGIN HIDDEN TESTS
from autograder.nb import grade_part
grade_part("deit.DistilledViT.forward")
### END HIDDEN TESTS

# %% [markdown]
# ## 2. Two distillation losses
#
# With class logits z_c, distillation logits z_d, labels y and a teacher's logits z_t:
#
# * **hard-label** distillation (DeiT's best): the teacher's *decision* y_t = argmax z_t is a second label,
#   L = ½·CE(z_c, y) + ½·CE(z_d, y_t);
# * **soft** distillation (Hinton et al., 2015): the distillation head matches the teacher's *distribution*
#   softened by a temperature T, L = (1 − α)·CE(z_c, y) + α·T²·KL(softmax(z_t/T) ‖ softmax(z_d/T)). Dividing by T
#   flattens both distributions (the teacher's second and third choices carry information); T² keeps the
#   gradient's size independent of T.
#
# The teacher is fixed: no gradient reaches it. Write **`hard_distillation_loss`** and **`soft_distillation_loss`**.

# %% tests=test_hard_distillation
nbchecks.check_part("deit.hard_distillation_loss")
### BEGIN HIDDEN TESTS
from autograder.nb import grade_part
grade_part("deit.hard_distillation_loss")
### END HIDDEN TESTS

# %% tests=test_soft_distillation
nbchecks.check_part("deit.soft_distillation_loss")
### BEGIN HIDDEN TESTS
from autograder.nb import grade_part
grade_part("deit.soft_distillation_loss")
### END HIDDEN TESTS

# %% [markdown]
# ## 3. Accuracy against training-set size
#
# The experiment: ResNet-18 (assignment 4), the ViT (assignment 3) and the ViT with your distillation token,
# trained on seeded subsets of the training set of several sizes, on several seeds. It runs through the course's
# `ablate` machinery with the training-set size as the grid's axis, one folder per model under `runs/a8/`: a
# re-run after a disconnect skips every finished run (and continues an interrupted one from its last checkpoint).
#
# * **Subsets** are *nested* and class-balanced: for one seed, the 1,000 images are among the 5,000, so the
#   sizes differ by the images added, not by which images were drawn; another seed draws other images (and
#   another validation split, data order and initialisation). Validation and test sets are always whole.
# * **Budget**: each size trains for the full set's number of optimiser steps (its recipe's epochs × full size /
#   size), at most 5× the recipe's epochs: a small set is not also a short training.
# * **Teacher**: the distilled ViT of size n and seed s learns from the ResNet-18 trained on *the same n images*
#   with seed s (`distill.teacher_from_runs`). No extra data reaches it; only the CNN's way of generalising does.
# * Each model keeps its own recipe (`vitcourse/training/recipes.py`); the two ViTs share one config, the
#   distilled one's extra token and head aside.

# %%
DATA = "cifar10"
# Your own copy of CIFAR (the folder holding cifar-10-batches-py/), or None: $VITCOURSE_DATA_ROOT, else download.
DATA_DIR = None
SEED = 0
splits = load_course_data(DATA, seed=SEED, data_dir=DATA_DIR)
_loaded = {SEED: splits}


def load_split(seed, classes=None):
    """The data of `seed` (its validation split), as the ablation runs ask for it; loaded once per seed."""
    if seed not in _loaded:
        _loaded[seed] = load_course_data(splits.name, seed=seed, data_dir=DATA_DIR)
    return _loaded[seed]


FULL = len(splits.train_labels)  # 45,000 on CIFAR-10 (5,000 are validation), 1,293 on the digits

# %% [markdown]
# **What fits a Colab session.** A grid's cost is the images it trains on (a training step costs about 3× a
# forward pass; the distilled ViT also pays for its teacher's forward pass) plus the images it evaluates: the whole
# validation set after every epoch, to keep the best epoch, and the test set once. With many small epochs the
# evaluation is most of a small set's cost. On paper, from the closed-form counts (`coursecore/counts.py`, the
# course's counts) at an *assumed* sustained 5 TFLOP/s on a T4 (about 8% of its fp16 peak), the plan below (the
# recipes' epochs × 0.3, two seeds) needs about 70 minutes:

# %%
COLAB_SIZES, COLAB_SEEDS = S.COLAB_SIZES, list(S.COLAB_SEEDS)  # the grid on a T4: the table lists its sizes
print(S.budget_table(S.budget_rows(COLAB_SIZES, len(COLAB_SEEDS), 45000, tflops=5.0,
                                   epochs_scale=S.PAPER_EPOCHS_SCALE)))

# %% [markdown]
# An assumed rate is a guess; your GPU is not. The next cell **measures** each model's training step and evaluation
# on this machine (under a minute on a T4, your `deit.py` included), turns the images above into minutes at
# those rates, and takes the longest training (the recipes' epochs × a scale from 1 down to 0.1) that fits
# `BUDGET_MINUTES`. That plan is what the grid below runs; after it, the plan is printed beside what the runs took.
# A disconnect costs at most a minute of one run: re-running the cells skips every finished run.
#
# Offline, the digits use their recipes' full epochs if they fit (a few minutes on a laptop); while graded (fast
# mode), one small size and one seed check the code path in seconds. On the 8×8 digits ResNet-18 would cost 35 times
# a ViT's compute per image (its CIFAR form keeps full-size maps in its first stage): there the CNN, and the
# teacher, is the same design with one block per stage, 16 to 128 channels wide (`S.SMALL_RESNET`, assignment 6's
# offline CNN).

# %%
ON_CIFAR = splits.name.startswith("cifar")
# Minutes of training: on Colab's T4 (a free session lasts longer, but not by much), or offline on a laptop.
BUDGET_MINUTES = 75 if ON_CIFAR else 20
CNN = None if ON_CIFAR else S.SMALL_RESNET  # None: ResNet-18
if fast_mode():
    SIZES, SEEDS = (96,), [SEED]  # one size, one seed: the code path, not the numbers
elif ON_CIFAR:  # COLAB_SIZES up to the training images there are (45,000 in CIFAR-10; fewer in a subset)
    SIZES, SEEDS = tuple(n for n in COLAB_SIZES if n < FULL) + (FULL,), COLAB_SEEDS
else:  # the digits: three sizes from 50 images (5 per class) to all of them, three seeds
    SIZES, SEEDS = (50, 200, FULL), [0, 1, 2]
plan = None
if fast_mode():
    EPOCHS_SCALE = 1.0
else:
    rates = S.measure_rates(splits, deit=deit, cnn=CNN)  # this machine's device, your deit.py
    plan = S.plan_for_budget(BUDGET_MINUTES, SIZES, len(SEEDS), FULL, rates=rates,
                             data=splits.name, cnn=CNN, val_size=len(splits.val_labels),
                             test_size=len(splits.test_labels))
    print(plan)
    if ON_CIFAR and not plan.fits:
        raise RuntimeError(f"This grid needs {plan.minutes:.0f} minutes at the rates measured here, more than "
                           f"BUDGET_MINUTES = {BUDGET_MINUTES}, even at a tenth of the recipes' epochs. On Colab "
                           "choose a GPU (Runtime > Change runtime type > T4 GPU) and run the notebook again; "
                           "elsewhere raise BUDGET_MINUTES or keep fewer sizes in COLAB_SIZES.")
    EPOCHS_SCALE = plan.epochs_scale

# %%
RUNS = "runs/a8"
common = dict(loader=load_split, epochs_scale=EPOCHS_SCALE, cnn=CNN)
scaling = S.run_scaling(SIZES, SEEDS, RUNS, models=("resnet18", "vit"), **common)
with todo_guard("DistilledViT.forward", "deit.py"):
    scaling = scaling.merged(S.run_scaling(SIZES, SEEDS, RUNS, models=("deit",), deit=deit, **common))
print(S.scaling_table(scaling))
if plan is not None:
    print(S.budget_check(plan.rows, scaling))
S.plot_scaling(scaling, title=f"{splits.name}: test accuracy against training-set size")
plt.show()

# %% [markdown]
# Read the table with its intervals: two curves whose bands overlap at a size are not distinguishable there with
# these seeds, and the sentences under the table say so for the paired differences (the same seed gives both
# models the same images). Where does the ViT fall furthest behind the ResNet, and does the gap close as the set
# grows? On the digits and at CIFAR scale you should not expect the ViT to overtake: the paper's crossing point
# lies beyond ImageNet-1k (1.3 million images). Question 1 asks you to read this figure.

# %% [markdown]
# ## 4. What the distillation token learned
#
# The two heads of a trained distilled ViT, taken apart on the test set: each head's accuracy, how often each one
# predicts what the teacher predicts, and the cosine similarity of the two output tokens (DeiT reports 0.93 at the
# last layer: similar, but not the same token). At the smallest and the largest training set, seed 0.

# %%
test_count = 64 if fast_mode() else 2000
test_x = features.normalise_like_training(splits.test_images[:test_count].float() / 255, splits)
test_y = splits.test_labels[:test_count]
agreement = {}
if "deit" not in scaling.results:
    print("no distilled ViT yet (section 3 needs DistilledViT.forward and hard_distillation_loss in deit.py): "
          "nothing to show")
else:
    for size in sorted({min(SIZES), max(SIZES)}):
        student = scaling.model("deit", size, SEEDS[0], deit=deit)
        teacher = scaling.model("resnet18", size, SEEDS[0])
        agreement[f"{size:,} images"] = distill.head_agreement(student, teacher, test_x, test_y)
    print(distill.agreement_table(agreement))

# %% [markdown]
# The distillation head was trained to agree with the teacher. Where the teacher is right and the class head wrong,
# the average of the two heads can be right: that is what distillation can gain in section 3. But a teacher trained
# on the same images predicts their labels (it fits them): with no augmentation (the digits recipe) the hard
# targets of the two heads are the same on every training image, and the heads end up close. Question 2 asks what
# that means, and why a *CNN* teacher, not a better ViT, is the one DeiT found to help.

# %% [markdown]
# ## 5. Mean attention distance
#
# For one layer's attention `a` (B, h, N, N), a query patch q looks on average Σ_k a[q, k]·‖pos(q) − pos(k)‖
# pixels away, the sum over the patch keys, pos the patch's (row, column) × patch size, and q's weights
# renormalised over the patches once the class (and distillation) tokens are dropped. A head's **mean attention
# distance** averages that over the query patches and the images. The ViT paper (Fig. 7) plots it per layer, every
# head a point: a convolution is the extreme of locality (a 3×3 kernel sees one pixel around); a head with uniform
# attention over the image sits near half the image side. Write **`mean_attention_distance`**.

# %% tests=test_mean_attention_distance
nbchecks.check_part("deit.mean_attention_distance")
### BEGIN HIDDEN TESTS
from autograder.nb import grade_part
grade_part("deit.mean_attention_distance")
### END HIDDEN TESTS

# %% [markdown]
# Your function on three trained ViTs: the plain ViT and the distilled ViT trained on the largest set (seed 0), and
# a pretrained ViT: timm's ViT-S/16 (pretrained on ImageNet-21k; CIFAR images resized to 224 px) on Colab, offline
# assignment 6's small ViT pretrained here on the digits 0–4 under the 8 symmetries of the square. The maps come
# from the library's hooks (`interpret.attention_maps`); every number is your function's.

# %%
WEIGHTS = None  # a local ViT-S/16 weights file (vit_small_patch16_224), if the hub is out of reach
pretrained = S.pretrained_vit(splits, WEIGHTS, out_dir=f"{RUNS}/pretrained", seed=SEED,
                              count=16 if fast_mode() else 256)
distances, sizes, trained = {}, {}, {}
with todo_guard("mean_attention_distance", "deit.py"):
    trained["ViT (yours)"] = scaling.model("vit", max(SIZES), SEEDS[0])
    if "deit" in scaling.results:
        trained["ViT distilled (yours)"] = scaling.model("deit", max(SIZES), SEEDS[0], deit=deit)
    for name, model in trained.items():
        distances[name] = S.attention_distances(model, test_x[:256], deit.mean_attention_distance)
        sizes[name] = splits.image_size
    distances[pretrained.label] = S.attention_distances(pretrained.model, pretrained.images,
                                                        deit.mean_attention_distance)
    sizes[pretrained.label] = pretrained.image_size
    S.plot_attention_distance(distances, sizes)
    plt.show()
    print(S.distance_summary(distances))

# %% [markdown]
# The dotted line is half the image side. In the paper, ViT-L/16's first layers mix heads that look a few pixels
# away with heads that look across the image, and the spread closes to large distances with depth; the
# heads that attend locally are the ViT's learned version of a convolution, and they are fewer when it was trained
# on less data. Compare your models' first layers with the pretrained one's (in pixels, and as a fraction of the
# image: 32 px on CIFAR, 8 px on the digits, 224 px for ViT-S/16). Question 3.

# %% [markdown]
# ## 6. What the position embeddings learned
#
# The cosine similarity of each patch's learned position embedding with every other patch's (the ViT paper's Fig. 7,
# left): tile (i, j) is patch (i, j) against the whole grid. A model that learned 2-D positions shows a bright spot
# at its own place, with its row and column brighter than the rest.

# %%
with todo_guard("mean_attention_distance", "deit.py"):
    S.plot_position_similarities({**trained, pretrained.label: pretrained.model})
    plt.show()

# %% [markdown]
# ## 7. Counting (autograded)
#
# For the CIFAR ViT of section 3 (32×32 RGB images, 4×4 patches, `embed_dim=256`, `depth=6`, `num_heads=8`,
# `mlp_ratio=2`, K = 10 classes, a class token), compute by hand (a few lines of arithmetic, not by building the
# model):
#
# * `DIST_HEAD_PARAMS`: the parameters of the distillation head `head_dist` that DeiT adds;
# * `VIT_FLOPS`: the plain ViT's forward FLOPs per image, matrix products only (patch embedding, the blocks'
#   qkv, attention products, projection and MLP, the head), FLOPs = 2 × multiply-adds. The budget table of section
#   3 counts about 3× this per training image (forward and backward).

# %% solution=counting
DIST_HEAD_PARAMS = None
VIT_FLOPS = None
### BEGIN SOLUTION
D_, K_, P_ = 256, 10, 4
DIST_HEAD_PARAMS = D_ * K_ + K_
patches = (32 // P_) ** 2
N_ = patches + 1  # the class token
block_macs = N_ * D_ * 3 * D_ + 2 * N_ * N_ * D_ + N_ * D_ * D_ + 2 * N_ * D_ * (2 * D_)
VIT_FLOPS = 2 * (patches * P_ * P_ * 3 * D_ + 6 * block_macs + D_ * K_)
### END SOLUTION

# %% tests=test_dist_head_params points=1
nbchecks.check_answered("DIST_HEAD_PARAMS", DIST_HEAD_PARAMS, int)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_answer
grade_answer("quiz", DIST_HEAD_PARAMS, points=1, name="DIST_HEAD_PARAMS", question="head_params", image_size=32,
             patch_size=4, embed_dim=256, depth=6, num_heads=8, mlp_ratio=2.0, num_classes=10)
### END HIDDEN TESTS

# %% tests=test_vit_flops points=2
nbchecks.check_answered("VIT_FLOPS", VIT_FLOPS, int)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_answer
grade_answer("quiz", VIT_FLOPS, points=2, name="VIT_FLOPS", question="total_flops", image_size=32, patch_size=4,
             embed_dim=256, depth=6, num_heads=8, mlp_ratio=2.0, num_classes=10)
### END HIDDEN TESTS

# %% [markdown]
# ## 8. What it means

# %% [markdown] answer=q_data_scaling points=3
# **Question 1.** From your table and figure of section 3: how does the ViT's accuracy change with the size of the
# training set compared with ResNet-18's? Is there a crossing point in your range? Quote the differences and their
# intervals at the smallest and the largest size. When would you choose a ViT over a ResNet, and why?
#
# ### BEGIN SOLUTION
# **Model answer.** ResNet-18 is ahead at every size measured, by the most at the smallest sets, and the gap narrows
# as data grows without closing in this range: there is no crossing point here. (Offline on the digits, 3 seeds,
# docs/data.md: the CNN leads the ViT by 32 points at 50 images, interval [+8, +56], by 18 at 200, [+12, +25], and
# by 2 with all 1,293, [+1, +3]: still better, by much less.) The ViT
# has no built-in locality or translation equivariance; it must learn them from the data, so it pays most where
# data is scarce. The paper's ViT overtakes ResNets only when pre-trained on ImageNet-21k (14M images) or JFT-300M.
# Choose a ViT when a model pretrained on large data is available to fine-tune (assignment 6), when the dataset is
# very large, or when global interactions / a uniform architecture across modalities matter; choose a ResNet (or
# distil into the ViT) for small data trained from scratch or a tight compute budget.
#
# **Mark scheme (3 points).** 1: the trend read from their own table (ResNet ahead at small sizes, gap narrowing),
# with numbers. 1: crossing point or not, judged with the intervals (overlap = not distinguishable). 1: when a ViT
# is appropriate (large data or pretraining) with the reason (weak inductive bias learned from data).
# ### END SOLUTION

# %% [markdown] answer=q_distillation points=3
# **Question 2.** What does the distillation token learn, and what does the teacher give the ViT that the labels do
# not? Use sections 3 and 4: did distillation beat the plain ViT at the smallest size, by how much, and is the
# difference larger than its interval? Why does a CNN teacher help a ViT more than a stronger ViT teacher would?
#
# ### BEGIN SOLUTION
# **Model answer.** The distillation token is trained to reproduce the teacher's predictions (hard labels: its
# argmax, including its mistakes and its answers on augmented images where the true label is ambiguous); section 4
# shows its head agreeing with the teacher more often than the class head, and the two output tokens similar but not
# identical, so the two heads carry complementary information and their average is what is tested. The teacher
# gives a function learnt with a convolutional prior: it labels every augmented crop the way a local,
# translation-equivariant model would, which is the bias the ViT lacks on small data; DeiT found a convnet teacher
# better than a stronger transformer teacher for exactly this reason (the student inherits the teacher's inductive
# bias, Touvron et al. §5.1). But the teacher can only teach where its label differs from the true one on what the
# student is shown. Offline (docs/data.md) distillation does *not* beat the plain ViT: −1.7 points at 50 images,
# interval [−12, +9], not distinguishable; the CNN teacher is 32 points better than the ViT there, yet it fits its
# own training images (its prediction equals the label on all 50 and all 200), and the digits recipe has no
# augmentation, so the distillation head's hard targets are the labels again. DeiT's gain comes with heavy
# augmentation (and soft targets), where the teacher labels the augmented views differently from the image's
# label; on CIFAR the recipe's crops, flips and cutout give it that room. The student quotes their own difference
# and interval, says whether it excludes 0 (one seed cannot), and explains a gain or its absence this way.
#
# **Mark scheme (3 points).** 1: what the token learns (the teacher's predictions, via its own head; agreement
# numbers from section 4). 1: the measured difference at the smallest size with its interval, judged correctly,
# and why it is (or is not) there (the teacher's labels equal the true ones on unaugmented training images). 1: why
# a CNN teacher (transfers locality/translation bias that the ViT lacks on small data), not just "the teacher is
# more accurate".
# ### END SOLUTION

# %% [markdown] answer=q_locality points=3
# **Question 3.** Do transformers have an inductive bias towards locality? Answer from section 5: which of your
# models' heads attend locally in the first layers, how does the distance change with depth, and how do your
# trained ViTs compare with the pretrained one? What does the position-embedding figure of section 6 add?
#
# ### BEGIN SOLUTION
# **Model answer.** Not by construction: every head of every layer can attend to every patch, and with learned
# positions nothing marks neighbours as special (without position embeddings attention is permutation-equivariant).
# Locality is *learned*: in the pretrained ViT some first-layer heads look only a few pixels away while others
# already look across the image, and the distances grow with depth, as in the paper's Fig. 7; trained from scratch
# on a small set the heads are less differentiated (fewer local heads, distances closer to the uniform-attention
# line), and the distilled ViT, taught by a CNN, tends to have more local early heads. The position-embedding
# similarity shows the same: the pretrained model's embeddings encode 2-D neighbourhood (a bright spot with its row
# and column), learned from data; a model trained on little data has noisier, less structured maps. So the bias
# towards locality is something a ViT acquires with data (or from a CNN teacher), where a CNN has it built in.
#
# **Mark scheme (3 points).** 1: no built-in locality (global attention, learned positions); it is learned. 1: their
# figure read: local vs global heads in early layers, growth with depth, trained vs pretrained, with numbers from
# the summary table. 1: the position-embedding structure as evidence of learned 2-D locality.
# ### END SOLUTION

# %% [markdown]
# ## References
#
# * Dosovitskiy et al., *An Image Is Worth 16x16 Words: Transformers for Image Recognition at Scale*, 2021
#   (Fig. 3–4 data scaling, Fig. 7 position embeddings and mean attention distance, Appendix D.7).
# * Touvron et al., *Training data-efficient image transformers & distillation through attention*, 2021 (DeiT).
# * Hinton, Vinyals & Dean, *Distilling the Knowledge in a Neural Network*, 2015.
# * He et al., *Deep Residual Learning for Image Recognition*, 2016.
# * Raghu et al., *Do Vision Transformers See Like Convolutional Neural Networks?*, 2021.
