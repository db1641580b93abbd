# %% [markdown]
# # Assignment 5: what makes a Vision Transformer work — analytical questions
#
# You have built a ViT, trained it, and compared it with a ResNet. This last assignment asks you to
# explain what you saw. Most questions are **written answers** (graded by a TA with a mark scheme: be
# precise, two to six sentences, cite your own plots or numbers from assignments 3 and 4 where they
# help). A few are **numbers or choices** that are graded automatically; their checks tell you when an
# answer has the wrong type, never whether it is right.
#
# Write each answer in the cell that says `YOUR ANSWER HERE` (double-click a markdown cell to edit it).

# %% setup

# %%
import torch

from vitcourse.course import nbchecks

# %% [markdown]
# ## 1. Inductive biases
#
# A convolution applies the same small filter at every position; a transformer block lets every token
# attend to every other token with weights computed from the data.

# %% [markdown] answer=q_inductive_bias points=4
# **Question 1.** Name the inductive biases built into a CNN (at least two) and into a ViT. For each,
# say what it buys on a small dataset such as CIFAR-10 and what it costs when data is plentiful.
#
# ### BEGIN SOLUTION
# **Model answer.** A CNN builds in *locality* (a 3×3 filter only sees neighbours), *weight sharing /
# translation equivariance* (the same filter everywhere) and a *hierarchy* of growing receptive fields
# (pooling, strides). These priors match natural images, so a CNN learns from few examples. A ViT only
# builds in the patch grid and is otherwise *permutation equivariant* over tokens, with a *global*
# receptive field from the first layer; locality and 2-D structure must be learned from data (through the
# position embeddings), which costs samples on CIFAR-10 but lets the model learn long-range and
# data-specific interactions when data is plentiful (JFT, ImageNet-21k), where ViTs overtake CNNs.
#
# **Mark scheme (4 points).** 1: two CNN biases (locality, weight sharing/translation equivariance,
# hierarchy). 1: ViT biases (patches only; permutation equivariance; global attention). 1: small data —
# CNN priors are right, so better sample efficiency. 1: large data — the ViT's weaker priors stop limiting
# it and it matches or beats CNNs.
# ### END SOLUTION

# %% [markdown]
# ## 2. Where does locality come from?
#
# Without position embeddings a ViT with mean pooling is *permutation invariant*: shuffle the patches and
# the logits do not change. Check the claim yourself with the reference-free code below (it uses only the
# layers built for you, not your TODOs), then answer the choice question.

# %%
from torch import nn

PATCHES, DIM = 16, 32  # a 4x4 grid of patch embeddings of a toy width
layer = nn.TransformerEncoderLayer(DIM, nhead=4, batch_first=True, norm_first=True).eval()
tokens = torch.randn(1, PATCHES, DIM)
shuffle = torch.randperm(PATCHES)
with torch.no_grad():
    pooled, pooled_shuffled = layer(tokens).mean(1), layer(tokens[:, shuffle]).mean(1)
print(f"max change of the pooled output after shuffling the patches: {(pooled - pooled_shuffled).abs().max():.1e}")

# %% [markdown]
# **Choice question.** A ViT *with* a learnable 1-D position embedding is trained on CIFAR-10. Which
# statement is true? Assign the letter to `MC_LOCALITY`.
#
# * `"a"` — patching alone makes the model local: each token only attends to neighbouring patches.
# * `"b"` — the model starts with no notion of which patches are neighbours; it can learn one through
#   the position embedding, whose learned similarities then show a 2-D grid structure.
# * `"c"` — a 1-D position embedding cannot represent two-dimensional neighbourhoods at all.

# %% solution=mc_locality
MC_LOCALITY = None  # "a", "b" or "c"
### BEGIN SOLUTION
MC_LOCALITY = "b"
### END SOLUTION

# %% tests=test_mc_locality points=1
nbchecks.check_answered("MC_LOCALITY", MC_LOCALITY, choices=("a", "b", "c"), todo="assign 'a', 'b' or 'c' in the cell above")
### BEGIN HIDDEN TESTS
from autograder.nb import grade_answer
grade_answer("choice", MC_LOCALITY, points=1, name="MC_LOCALITY", choices=["a", "b", "c"], correct="b",
             hint="not this one: think about what the learned position similarities looked like in assignment 1")
### END HIDDEN TESTS

# %% [markdown] answer=q_locality points=3
# **Question 2.** Do patching plus position embeddings give a ViT locality? Does a 2-D (row, column)
# sin-cos embedding help compared with a 1-D or a learned one — and how would you test that with the code
# of this course?
#
# ### BEGIN SOLUTION
# **Model answer.** Patching gives locality only *inside* a patch (the pixels of a patch are projected
# together); between patches the attention is global and, without positions, permutation invariant. The
# position embedding lets the model learn which patches are close: learned 1-D embeddings end up with a
# 2-D similarity structure (rows and columns), but this costs data. A 2-D sin-cos embedding builds the
# grid in, so it helps most on small data and costs nothing; with enough data all variants perform
# similarly (Dosovitskiy et al. report small differences). Test: train the same ViT with
# pos_embed = 'none' / 'learnable' / 'cosine' / 'sincos2d' on the same split and seed(s), compare
# validation accuracy, ideally also on a smaller subset.
#
# **Mark scheme (3 points).** 1: locality only within a patch; global attention between patches,
# permutation invariance without positions. 1: 2-D embedding encodes the grid / helps on small data,
# little difference with much data. 1: a controlled experiment (same model, data, seeds; vary pos_embed).
# ### END SOLUTION

# %% [markdown]
# ## 3. Scaling the inputs
#
# Every loader of this course maps pixels from 0…255 to roughly zero mean and unit variance per channel.

# %% [markdown] answer=q_input_scaling points=3
# **Question 3.** Why are the inputs scaled (normalised per channel) before the patch embedding? Name two
# reasons, and say what happens to the first layer's outputs and gradients with raw 0…255 pixels.
#
# ### BEGIN SOLUTION
# **Model answer.** The weights are initialised (trunc-normal, std 0.02) assuming inputs of order one;
# with raw pixels the patch embedding's outputs are ~255× too large, the first residual stream is
# dominated by pixel intensity, the softmax saturates, and gradients w.r.t. the first layer are huge —
# training diverges or needs a tiny learning rate. Zero-mean inputs also make the optimisation better
# conditioned (no shared bias direction in every gradient), and the same statistics at train and test
# time (and those of a pretrained model) keep features comparable.
#
# **Mark scheme (3 points).** 1: initialisation / activations assume unit scale. 1: optimisation
# conditioning, gradient magnitude, learning-rate stability. 1: the concrete effect of raw pixels
# (exploding activations, saturating softmax/attention, divergence).
# ### END SOLUTION

# %% [markdown]
# ## 4. Adding, not concatenating, positions

# %% [markdown] answer=q_add_position points=3
# **Question 4.** The position embedding is *added* to the patch embedding rather than concatenated.
# Why does adding work — why is the position not lost in the sum?
#
# ### BEGIN SOLUTION
# **Model answer.** In a D-dimensional space (D = 192, 256, ...) the patch embeddings and the position
# embeddings can occupy nearly orthogonal subspaces: the learned patch projection and the position table
# are trained together and can arrange themselves so that the following linear maps (q, k, v) can read
# content and position apart. Random high-dimensional vectors are almost orthogonal, so the sum keeps both
# signals recoverable. Adding keeps the width D (concatenation would widen every layer, costing parameters
# and compute) and is what the original Transformer and ViT do.
#
# **Mark scheme (3 points).** 1: high dimension, near-orthogonal subspaces. 1: the linear maps that follow
# can separate them (learned jointly). 1: concatenation would cost width/compute for no measurable gain.
# ### END SOLUTION

# %% [markdown]
# ## 5. Counting (autograded)
#
# For the ViT of assignment 3 on CIFAR-10 — `image_size=32, patch_size=4, embed_dim=192, depth=6,
# num_heads=3, mlp_ratio=4`, class token, learnable positions — compute by hand (or with a few lines of
# Python arithmetic, not by building the model):
#
# * `NUM_TOKENS`: tokens the encoder processes per image;
# * `ATTENTION_FLOPS`: FLOPs of the two attention products (q·kᵀ and softmax·v, all heads) of **one**
#   block for one image, counting 2 FLOPs per multiply-add.

# %% solution=counting
NUM_TOKENS = None
ATTENTION_FLOPS = None
### BEGIN SOLUTION
NUM_TOKENS = (32 // 4) ** 2 + 1
ATTENTION_FLOPS = 2 * 2 * NUM_TOKENS ** 2 * 192
### END SOLUTION

# %% tests=test_num_tokens points=1
nbchecks.check_answered("NUM_TOKENS", NUM_TOKENS, int)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_answer
grade_answer("quiz", NUM_TOKENS, points=1, name="NUM_TOKENS", question="num_tokens", image_size=32, patch_size=4, embed_dim=192,
             depth=6, num_heads=3)
### END HIDDEN TESTS

# %% tests=test_attention_flops points=2
nbchecks.check_answered("ATTENTION_FLOPS", ATTENTION_FLOPS, int)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_answer
grade_answer("quiz", ATTENTION_FLOPS, points=2, name="ATTENTION_FLOPS", question="attention_flops", image_size=32, patch_size=4, embed_dim=192,
             depth=6, num_heads=3)
### END HIDDEN TESTS

# %% [markdown]
# ## 6. Data, scale and the choice of architecture

# %% [markdown] answer=q_data_scaling points=4
# **Question 5.** How does a ViT's accuracy scale with the size of the training set compared with a
# ResNet's? Using your results from assignments 3 and 4, say when you would choose a ViT over a ResNet-18
# (consider data size, pre-training, compute budget and resolution).
#
# ### BEGIN SOLUTION
# **Model answer.** With little data the ResNet is more accurate: its priors substitute for examples.
# The ViT's accuracy keeps rising with data where the ResNet's saturates earlier; the curves cross at large
# scale (ImageNet-21k / JFT pre-training in Dosovitskiy et al.). Choose a ViT when a large pre-trained ViT
# can be fine-tuned, when data is plentiful, or when global context matters; choose a ResNet-18 for small
# datasets trained from scratch (like our CIFAR-10 runs), tight compute, or high resolution where
# attention's N² cost hurts (N grows as (H/P)·(W/P)). Good answers quote the measured accuracy gap,
# parameters and time per epoch from assignment 4.
#
# **Mark scheme (4 points).** 1: small data favours ResNet (priors). 1: ViT scales better with data /
# benefits from pre-training. 1: compute / resolution trade-off (N² attention, FLOPs vs params). 1: uses
# the student's own measurements to justify the choice.
# ### END SOLUTION

# %% [markdown]
# ## References
#
# * Dosovitskiy et al., *An Image Is Worth 16x16 Words: Transformers for Image Recognition at Scale*, 2021.
# * Raghu et al., *Do Vision Transformers See Like Convolutional Neural Networks?*, 2021.
# * d'Ascoli et al., *ConViT: Improving Vision Transformers with Soft Convolutional Inductive Biases*, 2021.
# * Beyer et al., *Better plain ViT baselines for ImageNet-1k*, 2022 (2-D sin-cos positions, mean pooling).
