# %% [markdown]
# # Assignment 3: the Vision Transformer
#
# Time to assemble the model: patches (assignment 1) go through a patch embedding, get a class token and
# position embeddings, run through the encoder blocks (assignment 2) and a final norm; the class token's
# output is classified. In **`ViT.py`** you write `PatchEmbed.forward` and `ViT.forward_features`; then
# you make sure the model can learn (overfit one batch), train it on CIFAR-10 with the fast data path,
# and look at what it learned: curves, confusion matrix, attention maps.
#
# The accuracy of this assignment is graded from **the checkpoint you hand in** (`vit_checkpoint.pt`,
# written below), evaluated by the grader on held-out test images — not from a number printed here. When
# the notebook is graded it runs in *fast mode* and does not retrain: it uses your checkpoint.

# %% setup

# %%
import dataclasses
import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import ViT
from vitcourse.course import augment_choice, nbchecks
from vitcourse.course.colab import load_course_data, todo_guard
from vitcourse.analysis.complexity import count_parameters
from vitcourse.analysis.plots import plot_confusion_matrix, plot_history
from vitcourse.training.recipes import default_recipe
from vitcourse.training.runtime import fast_mode, pick_device
from vitcourse.training.train import confusion_matrix, evaluate, train

torch.manual_seed(0)
DEVICE = pick_device()

# %% [markdown]
# ## 1. Patch embedding
#
# A linear map of every flattened patch to D features is exactly a convolution with kernel P and stride
# P: `self.proj` is that `Conv2d`. `PatchEmbed.forward` applies it and lays the patch grid out as a
# sequence, row by row: (B, C, H, W) → (B, N, D).

# %% tests=test_patch_embed
nbchecks.check_patch_embed(ViT.PatchEmbed)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_part
grade_part("ViT.PatchEmbed.forward")
### END HIDDEN TESTS

# %% [markdown]
# ## 2. From images to tokens
#
# `ViT.forward_features`: embed the patches, **prepend** the class token (one learned vector, the same for
# every image), add the position embedding (it has a row for the class token too), apply dropout, the
# blocks and the final LayerNorm.

# %% tests=test_forward_features
nbchecks.check_forward_features(ViT.ViT)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_part
grade_part("ViT.ViT.forward_features")
### END HIDDEN TESTS

# %% tests=test_model
nbchecks.check_model(ViT.ViT)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_part
grade_part("ViT.model")
### END HIDDEN TESTS

# %% [markdown]
# ## 3. Can it learn? Overfit one batch
#
# Before spending GPU time, check that the model *can* fit data at all: on a single batch of 32 images,
# with no augmentation and no regularisation, the training loss must fall towards zero. If it does not, a
# bug is hiding (a detached tensor, a wrong axis in the softmax, a missing residual).
#
# The data: as in assignment 1, a copy you already have is read from `DATA_DIR` (or `VITCOURSE_DATA_ROOT`).

# %%
DATA = "cifar10"  # "cifar10", "cifar100" or "digits"
# Your own copy of CIFAR, read as it is (no download): the folder holding cifar-10-batches-py/ (CIFAR-100:
# cifar-100-python/), e.g. "/content/drive/MyDrive/data". None: $VITCOURSE_DATA_ROOT if set, else download once.
DATA_DIR = None
CLASSES = None  # or e.g. [1, 3, 5, 7, 9] for the five-class CIFAR-10 subset (section 7)
SEED = 0
splits = load_course_data(DATA, classes=CLASSES, seed=SEED, data_dir=DATA_DIR)

# %%
model_config, train_config = default_recipe(splits.name, "vit", num_classes=splits.num_classes, in_chans=splits.in_chans)
# Train with the augmentation you chose in assignment 1 (saved there as augment.json); the line printed
# says whether it was found or the course default is used.
train_config = dataclasses.replace(train_config, augment=augment_choice.load(splits.name, train_config.augment))
print("model:", model_config)

# %%
OVERFIT_IMAGES, OVERFIT_LR = 32, 1e-3
OVERFIT_STEPS = 5 if fast_mode() else 150  # a few steps while grading, enough to reach ~0 loss otherwise
with todo_guard("the ViT", "ViT.py"):
    torch.manual_seed(SEED)
    tiny = ViT.ViT(**model_config).to(DEVICE)
    mean = torch.tensor(splits.mean, device=DEVICE)[:, None, None]
    std = torch.tensor(splits.std, device=DEVICE)[:, None, None]
    x = (splits.train_images[:OVERFIT_IMAGES].to(DEVICE).float() / 255 - mean) / std
    y = splits.train_labels[:OVERFIT_IMAGES].to(DEVICE)
    opt = torch.optim.AdamW(tiny.parameters(), lr=OVERFIT_LR, weight_decay=0.0)
    losses = []
    for step in range(OVERFIT_STEPS):
        loss = F.cross_entropy(tiny(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    plt.plot(losses)
    plt.xlabel("step")
    plt.ylabel("training loss on one batch")
    plt.yscale("log")
    plt.show()
    print(f"loss: {losses[0]:.3f} -> {losses[-1]:.4f}")

# %% [markdown]
# ## 4. Training
#
# The recipe below is the course default for the dataset (printed, with the reason for every choice in
# `vitcourse/training/recipes.py`): AdamW, linear warm-up then cosine decay, label smoothing, gradient clipping,
# the augmentation of assignment 1, and mixed precision on the GPU. The *fast data path* keeps the whole
# dataset on the GPU and augments whole batches there, so the T4 is never waiting for Colab's two CPUs.
#
# Training writes a checkpoint after every epoch to `runs/`: if Colab disconnects, run the cell again and
# it resumes where it stopped. At the end the weights of the epoch the recipe selects are saved to
# `vit_checkpoint.pt`, the file you hand in: the best on validation for CIFAR, the last epoch for the 8×8
# digits (`select_epoch`: 144 validation images are too few to pick an epoch by, see the recipe's comment).

# %%
CHECKPOINT = Path("vit_checkpoint.pt")  # hand this file in with the notebook
METRICS = Path("metrics.json")
print(train_config)

# %%
result = None
with todo_guard("the ViT", "ViT.py"):
    torch.manual_seed(SEED)
    model = ViT.ViT(**model_config)
    print(f"{count_parameters(model.config)['total']:,} parameters, {model.config.num_tokens} tokens per image")
    if fast_mode() and CHECKPOINT.exists():
        # Grading: never retrain, evaluate what was handed in.
        state = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        print(f"fast mode: using the handed-in {CHECKPOINT} instead of training")
    else:
        start = time.perf_counter()
        result = train(model, splits, train_config, checkpoint_dir=Path("runs") / f"vit_{splits.name}")
        if result.best_checkpoint is not None:
            model.load_state_dict(torch.load(result.best_checkpoint, map_location="cpu", weights_only=True)["model"])
        torch.save({"model": model.state_dict(), "config": model_config, "data": splits.name, "classes": CLASSES,
                    "mean": splits.mean, "std": splits.std}, CHECKPOINT)
        print(f"trained in {time.perf_counter() - start:.0f} s; saved {CHECKPOINT}")
    model.to(DEVICE)

# %% [markdown]
# **Curves.** Training and validation loss and accuracy per epoch.

# %%
if result is not None:
    plot_history(result.history, title=f"ViT on {splits.name}", augment=train_config.augment)
    plt.show()
else:
    print("no training in this session (graded, or the model is not written yet): no curves to draw")

# %% [markdown] answer=q_curves points=2
# **Question.** Read your curves: is the model under- or over-fitting at the end of training, and which
# one change to the recipe (name the field and the value) would you try first, and why?
#
# ### BEGIN SOLUTION
# **Model answer.** With the default recipe on CIFAR-10 the training accuracy keeps rising while the
# validation accuracy flattens and its loss stops falling: mild over-fitting, typical of a ViT without
# convolutional priors on 45,000 images. First try stronger regularisation — `cutout_prob` 0.5 → 1.0 or
# `drop_path_rate` 0.1 — or more epochs if both curves are still rising (under-fitting).
#
# **Mark scheme (2 points).** 1: a correct diagnosis backed by the gap between train and validation
# curves. 1: a concrete, justified change consistent with the diagnosis.
# ### END SOLUTION

# %% [markdown]
# **Test accuracy and confusion matrix.** Evaluated once, at the end, on the test split.

# %%
with todo_guard("the ViT", "ViT.py"):
    test = evaluate(model, splits.test_images, splits.test_labels, mean=splits.mean, std=splits.std)
    print(f"test accuracy {test.accuracy:.1%} ({len(test.labels)} images)")
    plot_confusion_matrix(confusion_matrix(test.predictions, test.labels, splits.num_classes), splits.class_names)
    plt.show()
    METRICS.write_text(json.dumps({"data": splits.name, "test_accuracy": test.accuracy,
                                   "parameters": count_parameters(model.config)["total"],
                                   "history": result.history if result is not None else None}, indent=1))

# %% [markdown]
# ## 5. Attention maps on real images
#
# Which patches does the class token look at? `model.get_attention_maps(images)` returns every block's
# attention weights (B, h, N, N) (computed with your manual `attention`). The class token's row of the
# last block, averaged over heads, drawn on the patch grid:

# %%
SHOW = 6  # images to show
with todo_guard("attention maps", "transformer.py and ViT.py"):
    x = (splits.test_images[:SHOW].float() / 255 - torch.tensor(splits.mean)[:, None, None]) / torch.tensor(splits.std)[:, None, None]
    maps = model.cpu().get_attention_maps(x)
    grid = model.config.grid_size
    cls_attention = maps[-1][:, :, 0, 1:].mean(1).reshape(SHOW, *grid)  # (B, H/P, W/P): class token -> patches
    fig, axes = plt.subplots(2, SHOW, figsize=(2 * SHOW, 4))
    for i in range(SHOW):
        img = splits.test_images[i].permute(1, 2, 0).squeeze(-1)
        axes[0, i].imshow(img, cmap="gray" if splits.in_chans == 1 else None)
        axes[0, i].set_title(splits.class_names[splits.test_labels[i]])
        axes[1, i].imshow(cls_attention[i], cmap="inferno")
        for ax in axes[:, i]:
            ax.axis("off")
    plt.show()

# %% [markdown] answer=q_attention_maps points=2
# **Question.** What do the class token's attention maps focus on? Give one example where they match
# the object and one where they do not, and say what that tells you about how the model classifies.
#
# ### BEGIN SOLUTION
# **Model answer.** In most images the last block's class-token attention concentrates on the object
# (a car's body, an animal's head) and ignores uniform background; in some it spreads over the background
# (sky for planes, water for ships), showing the model also uses context — a shortcut that can fail on
# unusual backgrounds. Maps of a small CIFAR ViT are coarse (8×8) and noisy; they show where information
# is gathered, not a full explanation.
#
# **Mark scheme (2 points).** 1: concrete examples (object vs background) from the student's own maps.
# 1: a sound interpretation (context/shortcut use, limits of attention maps as explanations).
# ### END SOLUTION

# %% [markdown]
# ## 6. Graded accuracy
#
# The cell below checks that your checkpoint exists and loads into your `ViT`. When grading, a hidden
# test evaluates it on held-out test images of the dataset it was trained on.

# %% tests=test_accuracy points=4
nbchecks.check_checkpoint(CHECKPOINT, ViT.ViT, train_hint="run the training cell (section 4)")
### BEGIN HIDDEN TESTS
# The scoring shared with the Gradescope bundle: linear credit between a floor and a target accuracy on
# held-out test images of the checkpoint's dataset (autograder/accuracy.py grade_checkpoint). Under
# nbgrader autograde the grader evaluates the handed-in checkpoint itself, in the reference ViT.
from autograder.nb import grade_answer
grade_answer("accuracy", points=4, vit_class=ViT.ViT)
### END HIDDEN TESTS

# %% [markdown]
# ## 7. Optional: CIFAR-100 and the five-class subset
#
# Set `DATA = "cifar100"` at the top of section 3 and run the notebook again (the recipe switches to the
# CIFAR-100 schedule; with 500 images per class instead of 5,000, expect a much lower accuracy), or keep CIFAR-10 and set
# `CLASSES = [1, 3, 5, 7, 9]` (automobile, cat, dog, horse, truck): with half the classes and half the
# data, is the task easier or harder than the full CIFAR-10? Which pairs does the confusion matrix mix
# up? Save your checkpoint under another name before you do, so that `vit_checkpoint.pt` stays your
# CIFAR-10 model.

# %% [markdown]
# ## Before you submit
#
# The self-check runs the visible checks of every part of `transformer.py` and `ViT.py` at once (the same
# as `python -m vitcourse check` in a terminal). Parts of later assignments may still say "not done".

# %%
from vitcourse.course.selfcheck import check_all, format_results

print(format_results(check_all(".", assignment=ASSIGNMENT)))

# %% [markdown]
# ## References
#
# * Dosovitskiy et al., *An Image Is Worth 16x16 Words*, 2021.
# * Touvron et al., *Training data-efficient image transformers (DeiT)*, 2021.
# * Abnar and Zuidema, *Quantifying Attention Flow in Transformers*, 2020 (reading attention maps).
