# %% [markdown]
# # Assignment 2: the transformer encoder
#
# A Vision Transformer is, after the patches are embedded, a stack of identical **encoder blocks**. Each
# block lets every token look at every other token (*self-attention*) and then transforms every token on
# its own (*the MLP*). In this assignment you write these pieces in **`transformer.py`**, one at a time,
# and check each one here before moving on:
#
# 1. scaled dot-product attention, `attention(q, k, v, mask)`;
# 2. splitting the embedding into heads and merging them back (`Attention.split_heads`, `Attention.merge_heads`);
# 3. the position-wise MLP (`Mlp.forward`);
# 4. the pre-norm encoder block (`Block.forward`).
#
# **Where to write code.** Open `transformer.py` (in Colab: the folder icon on the left, then double-click
# the file). Every place you write code has a `TODO` banner with hints. Save the file and re-run the
# check cell below it: autoreload picks your change up without restarting the notebook.
#
# **Shapes.** One legend for the whole course: `B` batch, `N` tokens, `D` embedding, `h` heads,
# `d = D / h` head dimension.

# %% setup

# %%
import matplotlib.pyplot as plt
import torch

import transformer
from vitcourse.course import nbchecks
from vitcourse.course.colab import todo_guard

torch.manual_seed(0);  # the same random numbers on every run (';' hides the generator it returns)

# %% [markdown]
# ## 1. Scaled dot-product attention
#
# Every query token $q_i$ compares itself with every key $k_j$ through a dot product; a softmax turns
# the scores of one query into weights that sum to one, and the output is the weighted average of the
# values:
#
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d}}\right) V .$$
#
# The division by $\sqrt{d}$ keeps the scores' variance near 1 whatever the head size, so the softmax
# does not saturate at initialisation. A boolean `mask` forbids some (query, key) pairs: their score
# becomes $-\infty$, hence their weight exactly 0.
#
# Write `attention` in `transformer.py`, then run the check. It compares your function with PyTorch's
# built-in `F.scaled_dot_product_attention`, with and without a mask.

# %% tests=test_attention
nbchecks.check_attention(transformer.attention)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_part
grade_part("transformer.attention")
### END HIDDEN TESTS

# %% [markdown]
# ## 2. Several heads
#
# One attention pattern per layer is limiting: a token may want to look at its neighbours *and* at the
# object it belongs to. Multi-head attention splits the `D` features into `h` heads of `d = D / h`
# features, runs attention in every head independently, and concatenates the results. Head `i` owns
# features `[i·d, (i+1)·d)`.
#
# Write `Attention.split_heads` (B, N, D) → (B, h, N, d) and `Attention.merge_heads`, its inverse.

# %% tests=test_split_heads
nbchecks.check_split_heads(transformer.Attention)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_part
grade_part("transformer.Attention.split_heads")
### END HIDDEN TESTS

# %% tests=test_merge_heads
nbchecks.check_merge_heads(transformer.Attention)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_part
grade_part("transformer.Attention.merge_heads")
### END HIDDEN TESTS

# %% [markdown]
# With the three pieces in place, the whole `Attention` module (the `qkv` projection, your heads, your
# attention, the output projection) should compute exactly what `torch.nn.MultiheadAttention` computes
# with the same weights. The module also has a *fused* path (`fused_attn=True`, PyTorch's fast kernel);
# the two paths must agree, which is how the model can train fast while your manual path stays the one
# that shows the attention maps.

# %% tests=test_attention_module
nbchecks.check_attention_module(transformer.Attention)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_part
grade_part("transformer.Attention.forward")
### END HIDDEN TESTS

# %%
with todo_guard("Attention", "transformer.py"):
    x = torch.randn(2, 5, 12)
    fused = transformer.Attention(12, num_heads=3, fused_attn=True).eval()
    manual = transformer.Attention(12, num_heads=3, fused_attn=False).eval()
    manual.load_state_dict(fused.state_dict())
    print(f"fused vs manual path: max difference {(fused(x) - manual(x)).abs().max():.2e}")

# %% [markdown]
# ## 3. The MLP
#
# After attention has mixed information *between* tokens, the MLP transforms every token *on its own*
# with the same two-layer network: `fc1` widens D to `mlp_ratio · D` features, a GELU adds the
# non-linearity, `fc2` projects back to D. Write `Mlp.forward`.

# %% tests=test_mlp
nbchecks.check_mlp(transformer.Mlp)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_part
grade_part("transformer.Mlp.forward")
### END HIDDEN TESTS

# %% [markdown]
# ## 4. The pre-norm encoder block
#
# A block adds the output of each sub-layer to its input (a *residual* connection) and normalises the
# input of the sub-layer, not its output (*pre-norm*, as in ViT):
#
# $$x \leftarrow x + \mathrm{Attention}(\mathrm{LN}_1(x)), \qquad x \leftarrow x + \mathrm{MLP}(\mathrm{LN}_2(x)).$$
#
# Write `Block.forward`.

# %% tests=test_block
nbchecks.check_block(transformer.Block)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_part
grade_part("transformer.Block.forward")
### END HIDDEN TESTS

# %% [markdown]
# ## 5. Attention maps on a toy input
#
# What does attention *do*? Take a sequence of 8 tokens where tokens 0–3 are copies of one vector and
# tokens 4–7 copies of another, and use the identity for the query and key projections. A query then
# scores highest the keys that equal it: the attention map shows two blocks. The temperature (the
# norm of the vectors) sets how sharp the blocks are.

# %%
TOY_TOKENS, TOY_DIM, TOY_SCALE = 8, 4, 3.0  # two groups of four identical tokens; scale sharpens the softmax
group_a, group_b = torch.eye(TOY_DIM)[0] * TOY_SCALE, torch.eye(TOY_DIM)[1] * TOY_SCALE
toy = torch.stack([group_a] * (TOY_TOKENS // 2) + [group_b] * (TOY_TOKENS // 2))[None, None]  # (B=1, h=1, N, d)
with todo_guard("attention", "transformer.py"):
    _, toy_weights = transformer.attention(toy, toy, toy)
    plt.imshow(toy_weights[0, 0], cmap="viridis")
    plt.xlabel("key token")
    plt.ylabel("query token")
    plt.colorbar(label="attention weight")
    plt.title("each token attends to the tokens equal to it")
    plt.show()

# %% [markdown]
# Each row is one query's weights and sums to 1. The two bright blocks are the two groups: with identical
# keys inside a group, a query spreads its weight evenly over its own group. Try `TOY_SCALE = 0.3`: the
# scores shrink, the softmax flattens, and every token attends almost uniformly to all tokens.
#
# ## 6. Counting parameters
#
# How many trainable parameters does **one** `Block(dim=64, num_heads=4, mlp_ratio=4.0)` hold (with the
# qkv bias, as built in `transformer.py`)? Work it out by hand from the layers in `Block.__init__`
# (two LayerNorms, `qkv`, `proj`, `fc1`, `fc2`) and assign the number to `BLOCK_PARAMS`.

# %% solution=block_params
BLOCK_PARAMS = None  # your answer: an int
### BEGIN SOLUTION
D_MODEL, HIDDEN = 64, 256
BLOCK_PARAMS = 2 * (2 * D_MODEL) + (3 * D_MODEL * D_MODEL + 3 * D_MODEL) + (D_MODEL * D_MODEL + D_MODEL) \
    + (D_MODEL * HIDDEN + HIDDEN) + (HIDDEN * D_MODEL + D_MODEL)
### END SOLUTION

# %% tests=test_block_params points=2
nbchecks.check_answered("BLOCK_PARAMS", BLOCK_PARAMS, int, todo="assign your count in the cell above")
### BEGIN HIDDEN TESTS
from autograder.nb import grade_answer
grade_answer("block_params", BLOCK_PARAMS, points=2, embed_dim=64, num_heads=4, mlp_ratio=4.0)
### END HIDDEN TESTS

# %% [markdown] answer=q_prenorm points=3
# **Question.** Why does ViT normalise the *input* of each sub-layer (pre-norm) rather than the output
# of the residual sum (post-norm, as in the original Transformer)? What happens to the residual stream
# in each case, and what does that mean for training deep stacks without a learning-rate warm-up?
#
# ### BEGIN SOLUTION
# **Model answer.** In pre-norm the residual stream `x` is never normalised: every block adds its output
# to an identity path that runs from the embedding to the final norm, so the gradient reaches early
# blocks unchanged through the identity, whatever the depth. In post-norm the LayerNorm sits on the
# residual path and rescales the gradient at every block; deep post-norm stacks need a warm-up and careful
# learning rates to train at all (Xiong et al., 2020).
#
# **Mark scheme (3 points).** 1 point: pre-norm keeps an un-normalised identity (residual) path.
# 1 point: gradients flow through that path to early layers / better conditioned at initialisation.
# 1 point: consequence: stable training of deep stacks, less or no warm-up (post-norm needs warm-up).
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
# * Vaswani et al., *Attention Is All You Need*, 2017.
# * Dosovitskiy et al., *An Image Is Worth 16x16 Words*, 2021.
# * Xiong et al., *On Layer Normalization in the Transformer Architecture*, 2020.
