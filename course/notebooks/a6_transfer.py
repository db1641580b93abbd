# %% [markdown]
# # Assignment 6: transfer learning and looking inside — pretrained ViT and Swin, fine-tuning modes, probes, Grad-CAM, attention
#
# In assignments 3 and 4 a ViT trained from scratch lost to a ResNet on CIFAR-10: with 50,000 images a
# transformer's weak priors cost more than they buy. Practitioners rarely train a ViT from scratch. They
# start from one **pretrained** on millions of images and adapt it. This assignment measures how much that
# is worth and how to do it:
#
# * **fine-tuning modes** on one code path: train only a new head (`head`), the last blocks too
#   (`partial`), everything at a lower backbone rate (`full`), the same architecture from random weights
#   with the same budget (`scratch`), and a **linear probe** on frozen features computed once (`probe`);
# * **looking inside** the fine-tuned models: attention maps and **attention rollout**, attention
#   **statistics** per mode, **Grad-CAM** for a ViT, a Swin and a CNN side by side, each model's **confusion
#   matrix**, and where two models **disagree**;
# * **model size**: Swin-T against Swin-S, the same design three times as deep in its main stage — what does
#   the larger pretrained model buy on a small task, and at what cost?
#
# In **`finetune.py`** you write the freezing logic of the modes (`set_trainable`), attention rollout
# (`attention_rollout`) and the attention statistics (`attention_statistics`); the library runs the
# experiments with *your* functions. On Colab with a GPU the backbones are timm's ViT-S/16, Swin-T and Swin-S
# and torchvision's ResNet-50, with weights downloaded (a few minutes per mode on a T4). Offline, and whenever
# the notebook is graded, it runs the same experiment on small backbones of the same four kinds that it
# pretrains itself on the digits 0–4 and fine-tunes on 5–9: the numbers are smaller, the code path is the same.

# %% setup

# %%
import matplotlib.pyplot as plt
import torch

import finetune
from vitcourse.analysis import interpret
from vitcourse.analysis import transfer_report as R
from vitcourse.analysis.plots import plot_attention_overlays, plot_cams, plot_confusion_grid
from vitcourse.course import nbchecks, nbchecks_transfer
from vitcourse.course.colab import todo_guard
from vitcourse.training import transfer as T
from vitcourse.training.train import confusion_matrix
from vitcourse.training.transfer_setup import course_setup

torch.manual_seed(0);  # the same random numbers on every run (';' hides the generator it returns)

# %% [markdown]
# ## 1. Pretrained backbones
#
# `create_backbone(name, K, pretrained=True)` (in `vitcourse.models.pretrained`) builds a timm model by name with its
# pretrained weights and a new, randomly initialised K-class head. Two details matter for CIFAR's 32×32 images:
#
# * the backbones were pretrained at 224×224, so the images are **resized** to 224 on the GPU
#   (`input_size=224`); building the model for another size (`img_size=160`) makes timm **resample the
#   position table** (bicubic interpolation of the 14×14 grid of learned positions to 10×10) — cheaper,
#   slightly less accurate;
# * without internet (or without the hub) `create_backbone` stops at once with one message that says how
#   to pass a local weights file (`WEIGHTS` below): the same loader reads it as a download.
#
# The data: as in assignment 1, a copy you already have is read from `DATA_DIR` (or `VITCOURSE_DATA_ROOT`).

# %%
DATA = "cifar10"
# Your own copy of CIFAR, read as it is (no download): the folder holding cifar-10-batches-py/, e.g.
# "/content/drive/MyDrive/data". None: $VITCOURSE_DATA_ROOT if set, else download once.
DATA_DIR = None
# Local weights files, if the hub is out of reach, e.g. {"vit": "vit_s16.safetensors", "swin": "swin_t.pth",
# "swin_s": "swin_s.pth", "cnn": "resnet50.pth"}; None downloads that one.
WEIGHTS = {"vit": None, "swin": None, "swin_s": None, "cnn": None}
SEED = 0

setup = course_setup(DATA, data_dir=DATA_DIR, weights=WEIGHTS, seed=SEED, out_dir="runs/a6")
task, specs, recipe = setup.splits, setup.specs, setup.recipe
print(setup.summary())

# %% [markdown]
# ## 2. Which parameters learn: `set_trainable`
#
# A mode is a choice of which parameters receive gradients. Write **`set_trainable(model, mode,
# partial_blocks)`** in `finetune.py`. Freezing is more than `requires_grad = False`: a frozen BatchNorm
# in train mode still updates its running statistics, and a frozen dropout still drops. So the function
# also returns the **frozen subtrees** by name; the trainer holds them in eval mode every epoch (what
# `T.TransferModel` does with the names). The helpers `classifier_of`, `blocks_of` and `final_norm_of`
# find the head, the blocks and the final norm of a timm ViT, a timm Swin and a torchvision ResNet.

# %% tests=test_set_trainable
nbchecks_transfer.check_set_trainable(finetune.set_trainable)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_part
grade_part("finetune.set_trainable")
### END HIDDEN TESTS

# %% [markdown]
# How many parameters does each mode train? The table counts them for the real Swin-T (built without weights:
# nothing is downloaded) with your function. ViT-S/16's counts are yours to compute in section 9; its row follows
# your answers there.

# %%
with todo_guard("set_trainable", "finetune.py"):
    print(R.trainable_table(finetune, ("swin_tiny_patch4_window7_224",), num_classes=10,
                            partial_blocks=T.DEFAULT_PARTIAL_BLOCKS))

# %% [markdown]
# ## 3. Fine-tune in every mode
#
# One recipe and one budget for every mode (`recipe` above: AdamW, warm-up and cosine decay; `full` gives
# the backbone a tenth of the head's learning rate). The probe extracts the frozen features once, caches
# them and fits a logistic regression. The ViT and Swin-T run every mode; Swin-S and the CNN run the probe and
# full fine-tuning, for sections 6 and 7 (`setup.modes`, printed above). Each row reports the trainable parameters, the time per epoch, the
# peak GPU memory and the test accuracy. On Colab the task is CIFAR-10 with 1,000 training images per class
# (the small-data regime, and every mode of both backbones fits one session: a few minutes per mode on a T4);
# the test set is the full 10,000 images. The full-data recipes are in `docs/transfer.md`
# (`vitcourse transfer`).

# %%
results = {}
with todo_guard("set_trainable", "finetune.py"):
    for arch, spec in specs.items():
        # While graded (fast mode) the Swin and the CNN run one mode: the code path is checked, not the numbers.
        results[arch] = T.run_transfer(task, spec, setup.modes[arch], recipe, mode_lr=setup.mode_lr, log=print,
                                       partial_blocks=setup.partial_blocks, finetune=finetune, keep_models=True)
    print(R.results_table(results))

# %% [markdown]
# ## 4. Attention rollout
#
# One layer's attention says where the class token reads from *in that layer*; after several layers a
# token is a mixture of mixtures. **Attention rollout** (Abnar & Zuidema, 2020) follows the mixing through
# the layers: each layer mixes with weights `residual_weight·I + (1 − residual_weight)·(mean over heads)`
# (the residual connection carries every token through), rows renormalised, multiplied from the first
# layer to the last. Write **`attention_rollout`** in `finetune.py`.

# %% tests=test_attention_rollout
nbchecks_transfer.check_attention_rollout(finetune.attention_rollout)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_part
grade_part("finetune.attention_rollout")
### END HIDDEN TESTS

# %% [markdown]
# The class token's last-layer attention and its rollout over the patches, for a few test images of the
# fine-tuned ViT (`full` mode) and of the one trained from scratch, on one colour scale (1 = uniform attention).

# %%
if not results:
    print("no fine-tuned models yet (set_trainable in finetune.py is not written): nothing to show")
else:
    with todo_guard("attention_rollout", "finetune.py"):
        images, overlays = task.test_images[:4], {}
        for mode in ("full", "scratch"):
            model = R.result_of(results["vit"], mode).model
            maps = interpret.attention_maps(model, R.model_inputs(model, images, task))
            rollout = finetune.attention_rollout(maps)
            overlays[f"{mode}: last layer"] = maps[-1][:, :, 0, 1:].mean(1)  # (B, N - 1), heads averaged
            overlays[f"{mode}: rollout"] = rollout[:, 0, 1:]
        # One figure, so the two models' maps share one colour scale.
        plot_attention_overlays(images, overlays, title="ViT, fine-tuned (full) and from scratch: class-token attention")
        plt.show()

# %% [markdown]
# ## 5. Attention statistics
#
# Four numbers per image describe the class token's attention `a` over the H'×W' patches: its **mean**
# and **standard deviation**, the **mass fraction** (the fewest patches holding half the attention, as a
# fraction of all patches: small = concentrated) and the **centre/edge ratio** (mean attention on the
# centre patches over the mean on the outer ring). Write **`attention_statistics`** in `finetune.py`;
# the table below computes them with your function for every ViT mode, on the rollout and on the last
# layer.

# %% tests=test_attention_statistics
nbchecks_transfer.check_attention_statistics(finetune.attention_statistics)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_part
grade_part("finetune.attention_statistics")
### END HIDDEN TESTS

# %%
if not results:
    print("no fine-tuned models yet (set_trainable in finetune.py is not written): nothing to show")
else:
    with todo_guard("attention_statistics", "finetune.py"):
        print(R.attention_table(results["vit"], task, finetune))

# %% [markdown]
# ## 6. Grad-CAM on a ViT, a Swin and a CNN
#
# Grad-CAM (Selvaraju et al., 2017) weights a layer's feature maps by the gradient of the class score and
# keeps the positive part. It was made for CNNs, whose last stage is a grid of feature maps (ResNet's `layer4`).
# A transformer has tokens, not maps: the ViT's patch tokens are laid out on the patch grid (the class token
# dropped), and the Swin's last stage already is a grid. The library runs pytorch-grad-cam on the last block of
# each fully fine-tuned model, explaining the true class; each map is scaled to [0, 1] on its own (the shape of
# the evidence, not its strength, is compared). Grid sizes differ: on Colab ViT-S/16 has 14×14 patches, the
# Swins' and ResNet-50's last stages 7×7; offline all four are 4×4.

# %%
if not results:
    print("no fine-tuned models yet (set_trainable in finetune.py is not written): nothing to show")
else:
    with todo_guard("set_trainable", "finetune.py"):
        images = task.test_images[:4]
        cams = {}
        for arch, rows in results.items():
            model = R.result_of(rows, "full").model
            cams[setup.labels[arch]] = interpret.grad_cam(model, R.model_inputs(model, images, task),
                                            targets=task.test_labels[:4].tolist())
        plot_cams(images, cams, labels=task.test_labels[:4].tolist(), class_names=task.class_names)
        plt.show()

# %% [markdown]
# ## 7. Where two models disagree
#
# The linear probe and full fine-tuning see the same pretrained features. Per class: the accuracy of each,
# the images only the probe gets right, only full fine-tuning gets right, and both get wrong.

# %%
if not results:
    print("no fine-tuned models yet (set_trainable in finetune.py is not written): nothing to show")
else:
    with todo_guard("set_trainable", "finetune.py"):
        probe, full = R.result_of(results["vit"], "probe"), R.result_of(results["vit"], "full")
        print(R.disagreement_table(probe.predictions, full.predictions, task.test_labels, names=("probe", "full"),
                                           class_names=task.class_names))

# %% [markdown]
# Where each fine-tuned model goes wrong: its confusion matrix on the test set (rows: the true class, each row
# summing to 1; columns: the class predicted), every model on the same colour scale, its accuracy in its title.
# Compare the modes' off-diagonal cells: which pairs of classes does training more of the backbone separate?

# %%
if not results:
    print("no fine-tuned models yet (set_trainable in finetune.py is not written): nothing to show")
else:
    matrices = {f"{setup.labels[arch]} {r.mode}":
                confusion_matrix(torch.tensor(r.predictions), task.test_labels, task.num_classes)
                for arch, rows in results.items() for r in rows}
    plot_confusion_grid(matrices, class_names=task.class_names)
    plt.show()

# %% [markdown]
# ## 8. A larger Swin: Swin-T or Swin-S?
#
# Swin-S is Swin-T with its third stage three times as deep (18 blocks instead of 6; 50M parameters against
# 28M); offline, the small Swin's last stage goes from 2 blocks to 6. Both were pretrained on the same data.
# The table puts the larger one beside the smaller in the modes both ran, with the cost as ratios and the
# accuracy difference beside its noise: ±2 standard errors of a difference of two accuracies on this test set.

# %%
print(R.size_comparison(results, "swin", "swin_s", labels=setup.labels))

# %% [markdown]
# ## 9. Counting (autograded)
#
# For timm's ViT-S/16 (`embed_dim=384, depth=12, num_heads=6, mlp_ratio=4`, class token, 224×224 images)
# with a new head for CIFAR-10's `K = 10` classes, compute by hand (or with a few lines of arithmetic, not
# by building the model or calling your function):
#
# * `HEAD_PARAMS`: the parameters that learn in `head` mode;
# * `PARTIAL_PARAMS`: the parameters that learn in `partial` mode with the last **2** blocks (the blocks,
#   the final LayerNorm and the head).

# %% solution=counting
HEAD_PARAMS = None
PARTIAL_PARAMS = None
### BEGIN SOLUTION
D_, M_ = 384, 4 * 384
HEAD_PARAMS = D_ * 10 + 10
BLOCK_PARAMS = 2 * D_ + (3 * D_ * D_ + 3 * D_) + (D_ * D_ + D_) + 2 * D_ + (D_ * M_ + M_) + (M_ * D_ + D_)
PARTIAL_PARAMS = 2 * BLOCK_PARAMS + 2 * D_ + HEAD_PARAMS
### END SOLUTION

# %% tests=test_head_params points=1
nbchecks.check_answered("HEAD_PARAMS", HEAD_PARAMS, int)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_answer
grade_answer("quiz", HEAD_PARAMS, points=1, name="HEAD_PARAMS", question="head_params", image_size=224, patch_size=16,
             embed_dim=384, depth=12, num_heads=6, num_classes=10)
### END HIDDEN TESTS

# %% tests=test_partial_params points=2
nbchecks.check_answered("PARTIAL_PARAMS", PARTIAL_PARAMS, int)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_answer
grade_answer("quiz", PARTIAL_PARAMS, points=2, name="PARTIAL_PARAMS", question="partial2_params", image_size=224,
             patch_size=16, embed_dim=384, depth=12, num_heads=6, num_classes=10)
### END HIDDEN TESTS

# %% [markdown]
# Your function's count for the real ViT-S/16 (built without weights), to compare with your answers above:

# %%
with todo_guard("set_trainable", "finetune.py"):
    print(R.trainable_table(finetune, ("vit_small_patch16_224",), num_classes=10, partial_blocks=2))

# %% [markdown]
# ## 10. What it means

# %% [markdown] answer=q_head_vs_full points=4
# **Question 1.** In one of the homeworks this course grew from, a pretrained ViT fine-tuned on a small
# dataset reached 93.4% with only the head trained and 68.5% with every parameter trained. Using your own
# table, explain how training *fewer* parameters can give a *higher* accuracy, and what in the recipe
# (learning rate, epochs, data size, augmentation) decides which mode wins.
#
# ### BEGIN SOLUTION
# **Model answer.** With few images, full fine-tuning has millions of free parameters for a few thousand
# labels: it over-fits, and large gradient steps from a randomly initialised head flow back into the
# backbone and destroy the pretrained features before the head has settled ("catastrophic forgetting"),
# especially at the learning rate used for a new head. Head-only (or a probe) keeps the generic features
# intact and fits only a linear map, which has low variance: on small data its bias costs less than full
# fine-tuning's variance. Which wins depends on the recipe: a lower backbone learning rate (our 0.1×),
# warm-up, few epochs, augmentation and more data make full fine-tuning win (it adapts features to the
# task); a high rate, long training on little data make it lose. The student cites their own modes' numbers.
#
# **Mark scheme (4 points).** 1: over-fitting / variance with many parameters and few labels. 1: the
# random head's large gradients damage pretrained features (forgetting), learning rate matters. 1: head-only
# / probe keeps features, low variance. 1: what flips it (lower backbone rate, more data, augmentation,
# fewer epochs), citing the student's table.
# ### END SOLUTION

# %% [markdown] answer=q_pretraining_scale points=3
# **Question 2.** What does the ViT paper (Dosovitskiy et al., 2021) find about the scale of pre-training
# data, and how does it explain assignment 4's result and this one's?
#
# ### BEGIN SOLUTION
# **Model answer.** Pre-trained on ImageNet-1k (1.3M images) ViTs do worse than comparable ResNets
# (BiT); on ImageNet-21k (14M) they match them; on JFT-300M they overtake them, at lower pre-training
# compute. Transformers lack the convolution's locality and translation equivariance, so they must learn
# them from data; with enough data this weaker prior stops limiting them. So trained from scratch on
# CIFAR-10 (assignment 4) the ViT loses to ResNet-18, while a ViT pretrained on large data transfers very
# well (high probe / fine-tune accuracy here).
#
# **Mark scheme (3 points).** 1: the ordering with data scale (1k worse, 21k comparable, JFT better).
# 1: the reason (weak inductive bias must be learned from data). 1: connects to the student's results
# (scratch vs pretrained, assignment 4 vs this one).
# ### END SOLUTION

# %% [markdown] answer=q_swin_locality points=3
# **Question 3.** Swin restricts attention to local windows (shifted every other block) and merges patches
# between stages. When does this locality help compared with a plain ViT, and what does it cost? Use your
# Swin and ViT rows.
#
# ### BEGIN SOLUTION
# **Model answer.** Local windows give a CNN-like prior (locality, a hierarchy of scales from patch
# merging), which helps with small data, small objects and dense tasks, and makes the cost linear in the
# number of patches instead of quadratic, so higher resolutions are affordable. The cost: no global
# interaction in one layer (only through shifting and depth), more complex code, window sizes tied to the
# resolution (7×7 windows need grids divisible by 7), and at large data scale the prior matters less. The
# student compares their Swin and ViT accuracies and times per mode (e.g. Swin from scratch doing better
# than ViT from scratch).
#
# **Mark scheme (3 points).** 1: locality/hierarchy as an inductive bias → helps with small data or local
# structure. 1: linear cost in tokens / resolution. 1: a cost or limit (no global attention per layer,
# window constraints), with the student's numbers.
# ### END SOLUTION

# %% [markdown] answer=q_swin_size points=3
# **Question 4.** From section 8's table: did the larger Swin pay for itself on this task? Weigh what it cost
# (parameters, time per epoch, memory) against what it gained in each mode, say whether the accuracy
# difference is larger than its noise, and say when you would expect the larger model to win clearly.
#
# ### BEGIN SOLUTION
# **Model answer.** On Colab Swin-S has about 1.8× Swin-T's parameters and takes roughly 1.5–2× the time and
# memory per epoch (offline, the table's own ratios; the student quotes theirs). With 1,000 images per class (or 10 offline) and a few epochs, the gain is
# small — on ImageNet Swin-S is about 2 points better than Swin-T (83.0 vs 81.3 top-1), and on a small task
# the difference is usually within or near the ±2 SE band, so one seed cannot say that the larger model is
# better; in full fine-tuning the larger model can even over-fit more. A probe gains only as much as the
# larger model's features are better for this task. The larger model wins clearly with more data (the full
# 50,000), more epochs, a harder or more distant task (more classes, fine-grained), or a larger input size,
# where its capacity is used; on a tight compute budget Swin-T's accuracy per GPU-second is higher.
#
# **Mark scheme (3 points).** 1: the costs read from the table as ratios (params, time, memory). 1: the
# accuracy difference per mode compared with its noise (±2 SE), with a conclusion that follows from it.
# 1: when the larger model should win (more data / epochs / harder task / higher resolution), or why it does
# not here (small data, over-fitting, features already sufficient).
# ### END SOLUTION

# %% [markdown] answer=q_gradcam points=3
# **Question 5.** Compare the Grad-CAM maps of the CNN with those of the two transformers in section 6: where
# do they agree, how do they differ (resolution, spread), and why? What does Grad-CAM show for a transformer,
# and what does it not show? Compare it with the attention rollout of section 4.
#
# ### BEGIN SOLUTION
# **Model answer.** Grad-CAM shows which positions of one chosen layer's tokens, weighted by the gradient of
# the class score, push that score up: a class-specific, gradient-based map at the patch grid's coarse
# resolution. It does not show how information moved between tokens across layers (attention mixes tokens,
# so a patch token at the last layer already contains other patches' content), it depends on the chosen
# layer and on the reshape (class token dropped), it keeps only positive evidence, and it is not a causal
# explanation. Rollout is class-agnostic and follows the attention flow through all layers, but ignores the
# values and the MLPs. Agreeing maps are more convincing than either alone. The CNN's map is usually compact
# and centred on the object, because a convolution's receptive field is local and its last stage's cells
# still mostly describe their own region; the ViT's can be patchy or spread over background patches, because
# after global attention a patch token holds information from anywhere (and a few tokens may serve as
# "registers" for global information); Swin, local within windows, usually sits between the two. The grids
# differ too (14×14 for ViT-S/16, 7×7 for Swin's and ResNet-50's last stages), so the ViT's map is finer.
#
# **Mark scheme (3 points).** 1: class-specific, gradient-weighted, one layer, coarse grid; a limit (token
# mixing, layer choice, positive-only, not causal). 1: the CNN against the transformers, from the student's
# figure (compactness / spread, grid resolution) with a reason (locality of convolution vs global attention,
# Swin's windows). 1: the contrast with rollout (class-agnostic, flow through layers, ignores values/MLP).
# ### END SOLUTION

# %% [markdown]
# ## References
#
# * Dosovitskiy et al., *An Image Is Worth 16x16 Words: Transformers for Image Recognition at Scale*, 2021.
# * Liu et al., *Swin Transformer: Hierarchical Vision Transformer using Shifted Windows*, 2021.
# * Kornblith et al., *Do Better ImageNet Models Transfer Better?*, 2019 (linear probes vs fine-tuning).
# * Abnar & Zuidema, *Quantifying Attention Flow in Transformers*, 2020.
# * Selvaraju et al., *Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization*, 2017.
# * Kumar et al., *Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution*, 2022.
