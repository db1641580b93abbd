# %% [markdown]
# # Assignment 1: data and patches
#
# A Vision Transformer does not see an image: it sees a **sequence of patches**, each flattened into a
# vector, plus a **position embedding** that tells it where each patch came from. Before building the
# model (assignments 2 and 3) we look at the data it will learn from, build the input pipeline, and write
# the two operations that turn images into sequences:
#
# 1. explore CIFAR-10: a grid of classes, pixel statistics;
# 2. build the loader: a stratified train/validation split and an augmentation *you* choose and justify;
# 3. write `patchify` / `unpatchify` in **`ViT.py`** and look at an image cut into patches;
# 4. write the 1-D and 2-D sinusoidal position embeddings in **`ViT.py`** and compare their similarity
#    maps with a learnable embedding.
#
# **Where to write code.** In `ViT.py` (next to this notebook; in Colab, the folder icon on the left),
# at the `TODO` banners; in this notebook only where a cell says `YOUR CODE HERE`. Shapes: `B` batch,
# `C` channels, `H`/`W` height/width, `P` patch size, `N` tokens, `D` embedding.

# %% setup

# %%
import matplotlib.pyplot as plt
import torch

import ViT
from data_utils import AugmentConfig, DeviceLoader
from vitcourse.course import augment_choice, nbchecks
from vitcourse.course.colab import load_course_data, todo_guard
from vitcourse.analysis.plots import plot_similarity_maps, show_images

torch.manual_seed(0);  # the same random numbers on every run (';' hides the generator it returns)

# %% [markdown]
# ## 1. The data
#
# One variable picks the dataset for the whole notebook. On Colab keep `"cifar10"` (it downloads once,
# 170 MB). A copy you already have (no internet, or a faster disk): set `DATA_DIR` to its folder, or the
# environment variable `VITCOURSE_DATA_ROOT`. Offline, or while the notebook is graded, the embedded 8×8
# digits stand in so that every cell still runs.

# %%
DATA = "cifar10"  # "cifar10", "cifar100" or "digits"
# Your own copy of CIFAR, read as it is (no download): the folder holding cifar-10-batches-py/ (CIFAR-100:
# cifar-100-python/), e.g. "/content/drive/MyDrive/data". None: $VITCOURSE_DATA_ROOT if set, else download once.
DATA_DIR = None
SEED = 0  # seeds the validation split: the same images are held out in every assignment
splits = load_course_data(DATA, seed=SEED, data_dir=DATA_DIR)

# %% [markdown]
# A few images of every class. CIFAR-10 images are 32×32: small enough that a whole object fits in a
# handful of 4×4 patches, which is why CIFAR ViTs use `patch_size=4` rather than the paper's 16.

# %%
show_images(splits.train_images, splits.train_labels, splits.class_names)
plt.show()

# %% [markdown]
# **Statistics.** Every loader normalises each channel to zero mean and unit variance with the
# *training-set* statistics (never the test set's: that would leak information about it). Compare the
# values measured here with the constants the loader uses, and check that the classes are balanced.

# %%
pixels = splits.train_images.float() / 255  # (B, C, H, W) in [0, 1]
print("per-channel mean (measured):", [round(v, 4) for v in pixels.mean(dim=(0, 2, 3)).tolist()], " used:", splits.mean)
print("per-channel std  (measured):", [round(v, 4) for v in pixels.std(dim=(0, 2, 3)).tolist()], " used:", splits.std)
counts = torch.bincount(splits.train_labels, minlength=splits.num_classes)
print(f"images per class in the training split: min {counts.min().item()}, max {counts.max().item()}")

# %% [markdown]
# ## 2. The loader
#
# `load_course_data` already held out a **stratified** validation split: every class keeps the same share
# in train and validation, so validation accuracy is not skewed by an unlucky class mix. Check it:

# %%
val_counts = torch.bincount(splits.val_labels, minlength=splits.num_classes)
share = val_counts.float() / (counts + val_counts).float()
print(f"validation share per class: min {share.min():.3f}, max {share.max():.3f}")

# %% [markdown]
# **Augmentation.** A ViT has no convolutional prior, so on 50,000 images it overfits quickly; random
# changes of the training images that keep their label act as more data. `AugmentConfig` has three
# knobs: a random crop of the zero-padded image (a shift of up to `crop_padding` pixels), a horizontal
# flip, and *cutout* (a blanked square). Choose the probabilities **for CIFAR-10** and justify them in the
# written answer below.

# %% solution=augment
AUGMENT = None  # an AugmentConfig for CIFAR-10
### BEGIN SOLUTION
AUGMENT = AugmentConfig(crop_prob=1.0, crop_padding=4, flip_prob=0.5, cutout_prob=0.5, cutout_size=8)
### END SOLUTION

# %% tests=test_augment points=2
nbchecks.check_answered("AUGMENT", AUGMENT, AugmentConfig, todo="build an AugmentConfig in the cell above")
### BEGIN HIDDEN TESTS
from autograder.nb import grade_answer
grade_answer("augment", AUGMENT, points=2, max_flip=0.5, max_cutout=16)
### END HIDDEN TESTS

# %% [markdown] answer=q_augment points=2
# **Question.** Justify each of your three probabilities for CIFAR-10. Which of them would you change
# for the handwritten digits, and why?
#
# ### BEGIN SOLUTION
# **Model answer.** Crops (p = 1, 4 pixels) teach translation invariance the ViT does not have built in;
# flips (p = 0.5) double the data because a mirrored car is still a car, and 0.5 keeps both orientations
# equally likely; cutout (p ≈ 0.5, 8 px) forces the model to use several parts of the object. For digits,
# no flips (a mirrored 2 or 5 is another symbol or no digit) and a 1-pixel shift only (8×8 images).
#
# **Mark scheme (2 points).** 1: each CIFAR choice justified by a label-preserving argument
# (translation, mirror symmetry, occlusion/regularisation). 1: digits: no flips because mirroring changes
# the class; smaller shifts for 8×8 images.
# ### END SOLUTION

# %% [markdown]
# The loader keeps the whole dataset on the device (GPU in Colab) and augments whole batches there: no
# worker processes, no per-image Python. One augmented batch (for the digits, flips are switched off
# whatever you chose: a mirrored digit is another symbol):

# %%
augment = AUGMENT if splits.name.startswith("cifar") else AugmentConfig(crop_prob=1.0, crop_padding=1, flip_prob=0.0)
loader = DeviceLoader(splits.train_images, splits.train_labels, batch_size=64, mean=splits.mean, std=splits.std,
                      augment=augment, shuffle=True, seed=SEED)
images, labels = next(iter(loader))
print(f"one batch: images {tuple(images.shape)} {images.dtype}, labels {tuple(labels.shape)}")
show_images(images.cpu(), labels.cpu(), splits.class_names, mean=splits.mean, std=splits.std)
plt.show()
if isinstance(AUGMENT, AugmentConfig):  # assignment 3 trains your ViT with this choice
    saved = augment_choice.save(AUGMENT)
    if saved:
        print(f"your augmentation is saved for assignments 3 and 4: {saved}")

# %% [markdown]
# ## 3. Patches
#
# `patchify(images, P)` cuts every image into non-overlapping P×P patches, numbered **row by row**, and
# flattens each patch with its values ordered (row, column, channel):
# (B, C, H, W) → (B, N, P·P·C) with N = (H/P)·(W/P). Write it in `ViT.py`; the check compares it with
# PyTorch's `F.unfold` on a non-square, multi-channel image.

# %% tests=test_patchify
nbchecks.check_patchify(ViT.patchify)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_part
grade_part("ViT.patchify")
### END HIDDEN TESTS

# %% [markdown]
# `unpatchify` puts the patches back: it must invert `patchify` exactly.

# %% tests=test_unpatchify
nbchecks.check_unpatchify(ViT.unpatchify)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_part
grade_part("ViT.unpatchify")
### END HIDDEN TESTS

# %% [markdown]
# An image cut into patches, and the same patches as the sequence the transformer reads:

# %%
PATCH = 4 if splits.image_size % 4 == 0 else 2  # 4x4 patches of a 32x32 image: an 8x8 grid of 64 tokens
image = splits.train_images[:1].float() / 255  # (1, C, H, W)
with todo_guard("patchify", "ViT.py"):
    patches = ViT.patchify(image, PATCH)[0]  # (N, P·P·C)
    grid = splits.image_size // PATCH
    tiles = patches.reshape(-1, PATCH, PATCH, splits.in_chans)  # (N, P, P, C)
    fig, axes = plt.subplots(grid, grid, figsize=(4, 4))
    for n, ax in enumerate(axes.flat):
        ax.imshow(tiles[n].squeeze(-1), cmap="gray" if splits.in_chans == 1 else None)
        ax.axis("off")
    fig.suptitle(f"{grid}x{grid} patches of {PATCH}x{PATCH} pixels")
    plt.show()
    strip = torch.cat(list(tiles[: 2 * grid]), dim=1)  # the first two rows of patches, side by side
    plt.figure(figsize=(12, 1))
    plt.imshow(strip.squeeze(-1), cmap="gray" if splits.in_chans == 1 else None)
    plt.axis("off")
    plt.title(f"the sequence: tokens 0..{2 * grid - 1} of {grid * grid}")
    plt.show()

# %% [markdown]
# Reading the strip, you can see why the model needs positions: once the patches are a sequence, nothing
# in a patch's pixels says which row it came from.
#
# ## 4. Position embeddings
#
# Attention is permutation-equivariant: shuffle the tokens and the outputs shuffle the same way. To tell
# patches apart by position, ViT adds a position embedding to every token. Three choices:
#
# * **learnable**: a (N, D) parameter trained with the model (the original ViT);
# * **1-D sinusoidal** (Vaswani et al.): row $p$ holds $\sin(p\,\omega_i)$ and $\cos(p\,\omega_i)$ with
#   $\omega_i = 10000^{-2i/D}$: nearby positions get similar vectors, at many scales;
# * **2-D sin-cos**: half of the features encode the patch's row, half its column.
#
# Write `sincos_1d_embedding` and `sincos_2d_embedding` in `ViT.py`.

# %% tests=test_sincos_1d
nbchecks.check_sincos_1d(ViT.sincos_1d_embedding)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_part
grade_part("ViT.sincos_1d_embedding")
### END HIDDEN TESTS

# %% tests=test_sincos_2d
nbchecks.check_sincos_2d(ViT.sincos_2d_embedding)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_part
grade_part("ViT.sincos_2d_embedding")
### END HIDDEN TESTS

# %% [markdown]
# **Similarity maps.** For a few patches, the cosine similarity of their embedding with every other
# patch's, drawn on the patch grid. A good position embedding is most similar to its neighbours.

# %%
GRID, EMBED_DIM = 8, 64  # the 8x8 patch grid of CIFAR with 4x4 patches; a small width
QUERY_PATCHES = (0, 27, 63)  # a corner, a centre and the opposite corner


def similarity_maps(table: torch.Tensor, title: str) -> None:
    """Cosine similarity of the query patches' rows with every row of table (N, D), on the grid."""
    # The colour scale spans the similarities between different patches (a patch with itself is always 1).
    plot_similarity_maps(table, (GRID, GRID), QUERY_PATCHES, title)
    plt.show()


similarity_maps(torch.randn(GRID * GRID, EMBED_DIM) * 0.02, "learnable, at initialisation (random)")
with todo_guard("sincos_1d_embedding", "ViT.py"):
    similarity_maps(ViT.sincos_1d_embedding(GRID * GRID, EMBED_DIM), "1-D sinusoidal (patches numbered row by row)")
with todo_guard("sincos_2d_embedding", "ViT.py"):
    similarity_maps(ViT.sincos_2d_embedding(GRID, GRID, EMBED_DIM), "2-D sin-cos (row half + column half)")

# %% [markdown]
# A learnable embedding starts as noise: every similarity structure it ends with is learned from data
# (you will see it in assignment 3). The 1-D table only knows the reading order, so patch 27 is similar to
# patches 26 and 28 but its neighbours above and below (19 and 35) are 8 positions away. The 2-D table is
# built from row and column, so the similar patches form a cross through the query patch.

# %% [markdown] answer=q_pos_similarity points=2
# **Question.** Describe the similarity maps of the 1-D and the 2-D embedding for the centre patch.
# Which neighbourhood does each encode, and which one would you expect to help a ViT trained from scratch
# on CIFAR-10 most?
#
# ### BEGIN SOLUTION
# **Model answer.** The 1-D map is a horizontal band around the query: close in reading order means the
# same row, the vertical neighbours are far in the sequence (and patches at the end of the previous row
# look close although they sit on the opposite side of the image). The 2-D map is a cross: high similarity
# along the query's row and column, so vertical and horizontal neighbours are both close. On small data
# the 2-D table gives the model the image's grid for free and should help most; a learnable embedding must
# learn it from the data.
#
# **Mark scheme (2 points).** 1: 1-D encodes reading order (row band, wrong vertical neighbours); 2-D a
# cross of row and column. 1: 2-D (or fixed 2-D) helps on small data; learnable must learn the structure.
# ### END SOLUTION

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
# * Krizhevsky, *Learning Multiple Layers of Features from Tiny Images*, 2009 (CIFAR).
# * DeVries and Taylor, *Improved Regularization of CNNs with Cutout*, 2017.
# * Vaswani et al., *Attention Is All You Need*, 2017 (sinusoidal positions).
# * Dosovitskiy et al., *An Image Is Worth 16x16 Words*, 2021; Beyer et al., *Better plain ViT baselines*, 2022 (2-D sin-cos).
