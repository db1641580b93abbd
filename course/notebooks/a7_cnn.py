# %% [markdown]
# # Assignment 7: CNN fundamentals and profiling — batch norm by hand, folding, Mish CNNs, feature maps, and where a training step's time goes
#
# The course compared a ViT with a ResNet without opening the CNN. This assignment opens it:
#
# * **batch normalisation** written by hand, training and eval mode, checked against `F.batch_norm`;
# * **folding** a batch norm into the convolution before it (the inference-time trick every deployed CNN
#   uses), derived, checked against PyTorch's `fuse_conv_bn_eval`, and timed;
# * **Mish** and a family of CNNs built from one config (the 3-conv Mish CNN, its batch-norm version, a deep
#   Mish CNN, VGG-16 for 32 px), with parameters and FLOPs in closed form;
# * **training** on the course's pipeline: the learning rate tuned on a small subset first, the Mish CNN with
#   and without batch norm, the deep Mish CNN and VGG-16;
# * **looking inside** your trained network: first-layer filters and early/middle/late feature maps on
#   the course's test images, beside a pretrained ResNet-50's;
# * **profiling** a training step (kernels, memory copies, data loading, CPU work), and measuring your own
#   change to VGG-16 against it: faster *and* more accurate?
#
# In **`cnn.py`** you write `batch_norm`, `fold_conv_bn`, `mish`, `ConvBlock.forward` and
# `ConvNet.forward`; the library trains, measures and profiles *your* networks. On Colab with a GPU use
# CIFAR-10 (a few minutes per network on a T4); offline, and whenever the notebook is graded, the same
# code runs on the embedded 8×8 digits for a few steps: the numbers are smaller, the code path is the same.

# %% setup

# %%
import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import cnn
from vitcourse.analysis import ablate, cnn_report, complexity, features, profile
from vitcourse.analysis.plots import plot_history
from vitcourse.course import nbchecks, nbchecks_cnn
from vitcourse.course.colab import load_course_data, todo_guard
from vitcourse.training.recipes import build_model, default_recipe
from vitcourse.training.runtime import fast_mode, pick_device
from vitcourse.training.train import train

torch.manual_seed(0);  # the same random numbers on every run (';' hides the generator it returns)

# %% [markdown]
# ## 1. Batch normalisation by hand
#
# For a batch `x` of shape (B, C, H, W), batch norm normalises every channel c with a mean μ_c and a
# variance σ²_c and then scales and shifts it: y = (x − μ_c) / √(σ²_c + ε) · γ_c + β_c.
#
# * In **training** mode μ and σ² are the statistics of this batch, over the n = B·H·W values of the
#   channel. The normalisation uses the *biased* variance (divided by n). The layer also keeps
#   **running** estimates for inference, updated in place: running ← (1 − momentum)·running +
#   momentum·batch value, with the *unbiased* variance (divided by n − 1), as PyTorch does.
# * In **eval** mode the running statistics are used, so a prediction does not depend on the other images
#   in the batch.
#
# Write **`batch_norm`** in `cnn.py`. The check compares values, gradients and the running statistics with
# `F.batch_norm` for (B, C), (B, C, L) and (B, C, H, W) inputs.

# %% tests=test_batch_norm
nbchecks_cnn.check_batch_norm(cnn.batch_norm)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_part
grade_part("cnn.batch_norm")
### END HIDDEN TESTS

# %% [markdown]
# ## 2. Folding batch norm into the convolution
#
# In eval mode a batch norm is an affine map per output channel: with s_c = γ_c / √(running_var_c + ε),
#
#     bn(z)_c = s_c · (z_c − running_mean_c) + β_c.
#
# A convolution is linear in its kernel: z_c = W_c ∗ x + b_c. So
#
#     bn(conv(x))_c = (s_c · W_c) ∗ x + s_c · (b_c − running_mean_c) + β_c,
#
# one convolution with kernel W'_c = s_c · W_c (every weight of output channel c scaled) and bias
# b'_c = s_c · (b_c − running_mean_c) + β_c (b_c = 0 when the conv has no bias). Stride, padding,
# dilation and groups are untouched: only output channels are scaled. Write **`fold_conv_bn`**; the check
# compares with `torch.nn.utils.fusion.fuse_conv_bn_eval` and with `bn(conv(x))`.

# %% tests=test_fold_conv_bn
nbchecks_cnn.check_fold_conv_bn(cnn.fold_conv_bn)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_part
grade_part("cnn.fold_conv_bn")
### END HIDDEN TESTS

# %% [markdown]
# Folding saves the batch norm's pass over every activation at inference. `ConvNet.fold_batch_norms()` folds
# every block of a network with your function; the library times both versions alternately on one batch
# (a ratio measured side by side, so a change of load hits both). On a CPU the gain is small (the eval-mode
# batch norm is one cheap elementwise pass next to 3×3 convolutions); on a GPU it is a separate
# memory-bound kernel per layer, and folding removes it.

# %%
with todo_guard("fold_conv_bn", "cnn.py"):
    net = cnn.build("bn_cnn", image_size=32)
    with torch.no_grad():  # move the running statistics off their initial 0 and 1
        net.train()(torch.randn(16, 3, 32, 32))
    timing = cnn_report.fold_speedup(net, torch.randn(8 if fast_mode() else 64, 3, 32, 32),
                                     repeats=2 if fast_mode() else 20)
    print(cnn_report.describe_fold(timing))

# %% [markdown]
# The two networks agree to float32 round-off (the largest difference of their logits, printed above), and the
# folded one has fewer parameters: each batch norm's 2·C_out (γ and β) became C_out biases (the running
# statistics were buffers all along). How many exactly is section 8's first question.

# %% [markdown]
# ## 3. Mish
#
# Mish (Misra, 2019) is x · tanh(softplus(x)), softplus(x) = log(1 + eˣ): smooth, slightly negative for
# small negative x, unbounded above. Write **`mish`**; the check compares values and gradients with
# `F.mish`, also at x = ±100, where exp(x) overflows float32.

# %% tests=test_mish
nbchecks_cnn.check_mish(cnn.mish)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_part
grade_part("cnn.mish")
### END HIDDEN TESTS

# %%
with todo_guard("mish", "cnn.py"):
    xs = torch.linspace(-5, 3, 200)
    plt.plot(xs, cnn.mish(xs), label="mish (yours)")
    plt.plot(xs, F.relu(xs), "--", label="ReLU")
    plt.legend()
    plt.title("Mish vs ReLU")
    plt.show()

# %% [markdown]
# ## 4. A family of CNNs from one config
#
# `ConvNetConfig` describes stages of 3×3 convolutions (each with an optional batch norm and an activation),
# a 2×2 max-pool after every stage, global average pooling and a linear head. Write
# **`ConvBlock.forward`** (conv → batch norm → activation) and **`ConvNet.forward`** (pooled features →
# dropout → head). The table counts the homework's four networks in closed form
# (`vitcourse.analysis.complexity`): a k×k 'same' convolution from C_in to C_out channels at H×W has
# C_in·C_out·k² weights and costs C_in·C_out·k²·H·W multiply-adds; FLOPs are twice that. The `numel()`
# column counts your built network.

# %% tests=test_conv_block
nbchecks_cnn.check_conv_block(cnn)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_part
grade_part("cnn.ConvBlock.forward")
### END HIDDEN TESTS

# %% tests=test_convnet
nbchecks_cnn.check_convnet(cnn)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_part
grade_part("cnn.ConvNet.forward")
### END HIDDEN TESTS

# %%
print(cnn_report.family_table(cnn))
print("\nforward MFLOPs per image, stage by stage (closed form):")
print(cnn_report.stage_flops_table())

# %% [markdown]
# Widths double as the pools halve H and W, so a convolution's cost, C_in·C_out·9·H·W, stays put from one stage to
# the next: read it in the second table. The first stage is the exception (it starts from 3 input channels), and
# VGG-16's middle stages cost more because they hold more convolutions; its last stage, on 2×2 maps, less. The
# last column gives each network's cost in units of the 3-conv Mish CNN: what VGG-16's 13 convolutions spend for
# a few points of CIFAR accuracy.

# %% [markdown]
# ## 5. Tuning on a small subset, then training with and without batch norm
#
# The same recipe for both networks (`default_recipe`: AdamW, one warm-up epoch, the same learning rate),
# so the loss curves differ by the normalisation alone. On CIFAR-10 with a T4 each run takes a few
# minutes; offline (and while graded) the digits stand in for a few steps.
#
# The learning rate is tuned first, as the homework did: a few short runs on a small subset are cheap, and a
# rate off by 3× costs more than most architecture choices.

# %%
DATA = "cifar10"
# Your own copy of CIFAR (the folder holding cifar-10-batches-py/), or None: $VITCOURSE_DATA_ROOT, else download.
DATA_DIR = None
SEED = 0
splits = load_course_data(DATA, seed=SEED, data_dir=DATA_DIR)


def load_split(seed, classes=None):
    """The data of `seed`, as the ablation runs ask for it: the split above for SEED, else a fresh one."""
    return splits if seed == SEED else load_course_data(splits.name, seed=seed, data_dir=DATA_DIR)  # the same data

# %% [markdown]
# **Tuning.** `ablate.run_grid` trains a grid of variants (here three learning rates of the Mish CNN, built from
# your `cnn.py`) with the network's recipe on the first `TUNE_IMAGES` training images for `TUNE_EPOCHS`
# epochs, writes one JSON per run under `runs/tune/` (a re-run after a disconnect skips the finished ones) and
# prints the table. Three rates a factor of ~3 apart bracket the recipe's 3e-3 (digits; 2e-3 on CIFAR).
# `ablate.best_variant` chooses on the **validation** accuracy: the test set is kept for the final numbers
# (a rate chosen on it would make its test accuracy an optimistic estimate of new data).

# %%
TUNE_GRID = {"lr": [1e-3, 3e-3, 1e-2]}
TUNE_IMAGES = max(len(splits.train_labels) // 10, 500)  # a tenth of CIFAR-10's 45,000; 500 of the 1,293 digits
TUNE_EPOCHS = 5  # short: enough to rank the rates, not to converge
tune_settings = ablate.Settings(model="mish_cnn", implementation=cnn, loader=load_split, max_train=TUNE_IMAGES,
                                epochs=TUNE_EPOCHS)
LR = default_recipe(splits.name, "mish_cnn")[1].lr  # the recipe's rate, until the grid has run
with todo_guard("ConvNet.forward", "cnn.py"):
    tuning = ablate.run_grid(ablate.expand(TUNE_GRID), [SEED], tune_settings, Path("runs", "tune"))
    print(Path("runs", "tune", ablate.TABLE_MD).read_text())
    best = ablate.best_variant(tuning)  # on validation accuracy, never test
    LR = best["options"]["lr"]
    print(f"best on validation: {best['variant']} ({best['value']:.1%}); both networks below train with lr = {LR:g}")
    print(ablate.edge_of_grid(TUNE_GRID, best["options"]) or "the best rate lies inside the grid: it is bracketed")

# %% [markdown]
# One seed ranks the rates only roughly (the table's interval columns need two or more seeds); a rate whose
# validation accuracy is far ahead is a safe pick, a near tie says either will do. Now the full runs with
# the chosen rate, with and without batch norm:

# %%
histories, trained = {}, {}
with todo_guard("ConvNet.forward", "cnn.py"):
    for name in ("mish_cnn", "bn_cnn"):
        config, recipe = default_recipe(splits.name, name, num_classes=splits.num_classes, in_chans=splits.in_chans)
        model = build_model(name, config, implementation=cnn)
        model(torch.zeros(2, splits.in_chans, splits.image_size, splits.image_size))  # a stub stops here (todo_guard)
        result = train(model, splits, dataclasses.replace(recipe, lr=LR, progress=False))
        histories[name], trained[name] = result.history, model  # section 6 looks inside the trained networks
        print(f"{name}: best validation accuracy {result.best_val_acc:.3f}")
    for name, history in histories.items():
        plot_history(history, title=f"{name} on {splits.name}")
        plt.show()

# %% [markdown]
# Batch norm lets the same learning rate make progress sooner: every layer sees inputs of a stable scale, so
# the early loss drops faster. Compare the first epochs of the two curves (in fast mode there are only a few
# steps: run the notebook yourself to see the real curves).

# %% [markdown]
# **What batch norm costs.** A trained batch-norm network normalises with its running statistics in eval mode: a
# test image's prediction does not depend on the images next to it. In train mode it uses each batch's own mean
# and variance, as during training, and then it does, and a small batch gives noisy statistics (with batch 2,
# every channel is normalised over two images). The table measures both on the test set with your trained
# `bn_cnn`: the accuracy with each batch size, and the share of test images whose predicted class changes.

# %%
if "bn_cnn" not in trained:
    print("no trained bn_cnn yet (ConvNet.forward in cnn.py): nothing to measure")
else:
    test_x = features.normalise_like_training(features.course_images(splits, count=1024)[0], splits)
    test_y = splits.test_labels[:len(test_x)]
    print(cnn_report.batch_norm_dependence(trained["bn_cnn"], test_x, test_y, batch_sizes=(2, 64))["markdown"])

# %% [markdown]
# **The deep Mish CNN and VGG-16** train with their own documented recipes (`vitcourse/training/recipes.py`;
# the reasons for each choice are written there, the measured numbers in the course's docs/cnn.md). They go
# through `ablate` too, each into its own folder, so a re-run skips them and section 7 reuses the VGG-16 run as
# its baseline. On the 8×8 digits VGG-16's input is upsampled to 32 px inside the model: its five 2×2 pools
# need it.

# %%
def family_settings(name):
    """A network's documented recipe, the same here and in section 7 (so the VGG-16 run is reused there)."""
    # While graded (fast mode) one short epoch of small batches on 128 images checks the code path; the numbers are
    # not the point.
    fast = dict(epochs=1, max_train=128, overrides=dict(batch_size=8)) if fast_mode() else {}
    return ablate.Settings(model=name, implementation=cnn, loader=load_split, **fast)


with todo_guard("ConvNet.forward", "cnn.py"):
    for name in ("deep_mish_cnn", "vgg16"):
        (record,) = ablate.run_grid([{}], [SEED], family_settings(name), Path("runs", name))
        print(f"{name}: {record['num_parameters']:,} parameters, {record['epochs_run']} epochs of "
              f"{record['time_per_epoch_s']:.1f} s, validation {record['best_val_acc']:.1%}, "
              f"test {record['test_accuracy']:.1%}")

# %% [markdown]
# ## 6. Looking inside: filters and feature maps
#
# Your trained `bn_cnn` from section 5, on the course's own test images. Its first-layer filters before and after
# training (each filter scaled to its own range: the pattern, not the size), then what its early, middle and late
# blocks respond to in a test image: the first channels of each block's output, before the stage's max-pool.
# Early maps keep the image's layout (edges, strokes); late ones are coarse and respond to larger patterns. On
# the 8×8 digits offline the maps are tiny and a few training steps barely move the filters from their random
# start; on CIFAR with a GPU the first-layer filters turn into colour blobs and oriented edges.

# %%
images, names = features.course_images(splits, count=4)
if "bn_cnn" not in trained:
    print("no trained bn_cnn yet (section 5 needs ConvNet.forward in cnn.py): nothing to show")
else:
    net = trained["bn_cnn"].cpu().eval()
    untrained = build_model("bn_cnn", default_recipe(splits.name, "bn_cnn", num_classes=splits.num_classes,
                                                     in_chans=splits.in_chans)[0], implementation=cnn)
    features.plot_filters({"bn_cnn before training": untrained, "after training": net})
    plt.show()
    maps, logits = features.feature_maps(net, features.normalise_like_training(images, splits),
                                         features.convnet_layers(net))
    guess = [splits.class_names[int(k)] for k in logits.argmax(-1)]
    features.plot_feature_maps(images[0], {label: fmap[0] for label, fmap in maps.items()},
                               title=f"bn_cnn on a test image: a {names[0]!r}, predicted {guess[0]!r}")
    plt.show()

# %% [markdown]
# **A pretrained ImageNet network.** torchvision's ResNet-50 (Colab downloads its weights; elsewhere pass a local
# file in `WEIGHTS`) on the same test images, upsampled to 224 px: its first layer has 64 7×7 filters learnt from
# 1.2 million images, and its top-5 ImageNet guesses show what it makes of a small, blurred CIFAR image (a CIFAR
# "ship" often reads as a "container ship" or a "fireboat"; the digits are out of its world).

# %%
WEIGHTS = None  # a local resnet50 weights file (e.g. resnet50-11ad3fa6.pth), or None
try:
    backbone, categories = features.load_pretrained("resnet50", WEIGHTS, download=not fast_mode())
except features.WeightsUnavailableError as err:
    print(f"no pretrained ResNet-50 here ({err}): the figures above are of your own network")
    backbone = None
if backbone is not None:
    features.plot_filters({"ResNet-50 (ImageNet)": backbone})
    plt.show()
    maps, logits = features.feature_maps(backbone, features.for_imagenet(images))
    features.plot_feature_maps(images[0], {label: fmap[0] for label, fmap in maps.items()},
                               title=f"ResNet-50 on a test image: a {names[0]!r}")
    plt.show()
    for name, top in zip(names, features.top_k(logits, categories)):
        print(f"{name}: " + ", ".join(f"{c} {p:.0%}" for c, p in top))

# %% [markdown]
# ## 7. Where a training step's time goes
#
# `vitcourse.analysis.profile` runs a few training steps under `torch.profiler` (wait, warm-up, active) and
# splits the step into kernels, memory copies and sets, data loading, CPU execution and the rest, from the
# profiler's own events (`vitcourse profile --model M --json OUT` does the same from a terminal and writes
# the Chrome / Perfetto trace). On a CPU there are no kernels or copies on a device: those columns say n/a.

# %%
# Profiled where you train: the GPU on Colab (a T4's step splits into kernels, copies and CPU launch work), else
# the CPU, with a batch that keeps that device busy (128 images on a GPU, 16 on a CPU).
DEVICE = str(pick_device("auto"))
PROFILE_BATCH = profile.default_batch_size(DEVICE)
batch = 8 if fast_mode() else PROFILE_BATCH
rows = []
steps = 1 if fast_mode() else 5
with todo_guard("ConvNet.forward", "cnn.py"):
    for name in (("mish_cnn", "bn_cnn") if fast_mode() else ("mish_cnn", "bn_cnn", "deep_mish_cnn", "vgg16")):
        batches = profile.random_loader(batch * (steps + 2), batch, 32)
        rows.append(cnn_report.profile_row(name, cnn.build(name), batches, device=DEVICE, active=steps))
    print(f"profiled on {DEVICE}, {batch} images per step")
    print(cnn_report.profile_table(rows))

# %% [markdown]
# **Your change.** Propose the smallest architecture change that makes VGG-16's training step faster *and*
# the network more accurate (remove a stage, narrow some widths, fewer convolutions in a stage, no batch norm
# ...). Write it as a `ConvNetConfig` in `MY_CHANGE` (the image size, channels and classes come from the data).
# One call measures it against VGG-16: `cnn_report.compare_change` trains both with VGG-16's recipe on the
# same seeds (through `ablate`, so it is resumable and section 5's VGG-16 run is reused), profiles their
# training steps alternately (a ratio measured side by side, so a change of load hits both), counts parameters
# and GFLOPs, and writes the table with the deltas and a verdict (`runs/vgg16/change.md`). With two or more
# seeds the accuracy difference comes with its paired 95% interval.
#
# The default, VGG-16 without its last stage (three 512-channel convolutions on 2×2 maps: 7.1M of its 14.7M
# parameters), is a starting point: replace it with your own change.

# %%
MY_CHANGE = dataclasses.replace(cnn.CONFIGS["vgg16"], stages=cnn.CONFIGS["vgg16"].stages[:-1])
CHANGE_SEEDS = [SEED] if fast_mode() else [SEED, SEED + 1]  # two seeds: the paired interval of the difference
with todo_guard("ConvNet.forward", "cnn.py"):
    change = cnn_report.compare_change(MY_CHANGE, family_settings("vgg16"), Path("runs", "vgg16"), seeds=CHANGE_SEEDS,
                                       profile_repeats=1 if fast_mode() else 3, profile_steps=1 if fast_mode() else 2,
                                       profile_batch=2 if fast_mode() else PROFILE_BATCH)
    print(change.markdown)

# %% [markdown]
# Read the verdict with its evidence: a step-time ratio within 5% of 1 is timing noise ("about as fast"), and
# with one seed an accuracy difference of a point or two can be the seed alone. Question 4 asks you to
# defend your change with these numbers.

# %% [markdown]
# ## 8. Counting (autograded)
#
# Compute by hand (a few lines of arithmetic, not by building the model):
#
# * `FOLDED_PARAMS`: the parameters of `bn_cnn` (3 convs 32-64-128 with batch norm, 3×3, RGB 32 px) built for
#   CIFAR-100 (K = 100 classes), after `fold_batch_norms()`;
# * `CONV_FLOPS`: the forward FLOPs, for one image, of a 3×3 'same' convolution from 64 to 128 channels on a
#   16×16 feature map (the bias not counted, as FlopCounterMode counts).

# %% solution=counting
FOLDED_PARAMS = None
CONV_FLOPS = None
### BEGIN SOLUTION
convs = [(3, 32), (32, 64), (64, 128)]
FOLDED_PARAMS = sum(cin * cout * 9 + cout for cin, cout in convs) + 128 * 100 + 100
CONV_FLOPS = 2 * 64 * 128 * 9 * 16 * 16
### END SOLUTION

# %% tests=test_folded_params points=1
nbchecks.check_answered("FOLDED_PARAMS", FOLDED_PARAMS, int)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_answer
grade_answer("cnn_count", FOLDED_PARAMS, points=1, name="FOLDED_PARAMS", quantity="folded_params", model="bn_cnn",
             num_classes=100)
### END HIDDEN TESTS

# %% tests=test_conv_flops points=1
nbchecks.check_answered("CONV_FLOPS", CONV_FLOPS, int)
### BEGIN HIDDEN TESTS
from autograder.nb import grade_answer
grade_answer("cnn_count", CONV_FLOPS, points=1, name="CONV_FLOPS", quantity="conv_flops", in_chans=64, out_chans=128,
             kernel_size=3, height=16, width=16)
### END HIDDEN TESTS

# %% [markdown]
# ## 9. What it means

# %% [markdown] answer=q_bn_variance points=3
# **Question 1.** Why does batch norm normalise with the biased variance but keep the unbiased one as its
# running estimate? What would go wrong in eval mode if the running variance were the biased one, and when
# does the difference matter?
#
# ### BEGIN SOLUTION
# **Model answer.** In training the layer normalises *this* batch exactly: its values have mean 0 and
# variance 1 under the biased (population) variance of the batch itself. The running variance estimates the
# variance of the whole data distribution from samples of n values, and the sample variance divided by n
# underestimates it by the factor (n − 1)/n; dividing by n − 1 removes that bias. With a biased running
# variance, eval mode would divide by a slightly too small σ and produce activations slightly larger than in
# training. The difference is (n − 1)/n: negligible for conv layers (n = B·H·W is large) but noticeable
# for small batches of a (B, C) input after a linear layer (B = 8: 12%).
#
# **Mark scheme (3 points).** 1: training normalises the batch itself (biased is exact for it). 1: the running
# value estimates the population variance, n − 1 removes the bias. 1: when it matters (small n, e.g. batch
# norm after a linear layer with a small batch), with the factor (n − 1)/n.
# ### END SOLUTION

# %% [markdown] answer=q_fold points=3
# **Question 2.** Why can a batch norm be folded into the convolution before it at inference, but not during
# training? Would it still work with a ReLU between the convolution and the batch norm?
#
# ### BEGIN SOLUTION
# **Model answer.** In eval mode the batch norm uses fixed running statistics, so it is a fixed affine map
# per channel, and an affine map after a linear map (the convolution) is again linear plus a bias: one
# convolution. In training the mean and variance depend on the batch (and the gradient flows through them),
# so the map changes with every batch and no fixed kernel reproduces it. With a ReLU in between the
# composition is no longer affine (conv → ReLU → BN): the BN's scale could still be pushed through only for
# positive scales and its shift not at all, so the fold is not exact; it works for conv → BN → ReLU, the
# usual order.
#
# **Mark scheme (3 points).** 1: eval-mode BN is a fixed per-channel affine map. 1: affine ∘ linear is one
# conv; training statistics depend on the batch. 1: a non-linearity between breaks the fold (conv → BN → act
# is the order that folds).
# ### END SOLUTION

# %% [markdown] answer=q_bn_downsides points=3
# **Question 3.** Using the batch-norm table of section 5, what are batch norm's downsides? When does a network
# with batch norm behave differently at test time from training, and what would you use instead for training
# with batches of 2 (a large model on one GPU), and why?
#
# ### BEGIN SOLUTION
# **Model answer.** Batch norm makes each example's output depend on the other examples of its batch while
# training: the mean and variance are the batch's. With small batches those statistics are noisy estimates (batch
# 2: two values per channel and position), so training is noisy and the running averages that eval mode uses can
# disagree with what the network saw in training: the table shows the accuracy with batch statistics falling at
# batch 2 while eval mode is the same at every batch size, and a share of predictions changing with the batch.
# Train/eval mismatch: a model evaluated in train mode (or with statistics of a shifted distribution) behaves
# differently; running statistics computed on different data (fine-tuning, domain shift) are stale. Alternatives
# that do not normalise over the batch: LayerNorm or GroupNorm (statistics per example, over channels or groups
# of channels), as transformers and detectors with small batches use; or keep BN frozen in eval mode.
#
# **Mark scheme (3 points).** 1: batch statistics make outputs depend on the batch; small batches make them
# noisy, citing the table's numbers. 1: the train/eval difference (running vs batch statistics, stale or
# mismatched statistics). 1: an alternative (GroupNorm / LayerNorm / frozen BN) with the reason (per-example
# statistics).
# ### END SOLUTION

# %% [markdown] answer=q_profile points=3
# **Question 4.** Using your profile table, which share dominates the training step of each network, and
# what is the smallest change that would cut VGG-16's step time while keeping or raising its accuracy on
# 32-pixel images? Support it with numbers from your profile and change tables.
#
# ### BEGIN SOLUTION
# **Model answer.** On a GPU the small CNNs are dominated by CPU work and data loading (the kernels are tiny:
# low GPU utilisation), VGG-16 by its convolution kernels. At 32 px VGG-16's last stage runs 512-channel
# 3×3 convs on 2×2 and 1×1 maps: much of its 14.7 M parameters sit in stages that see almost no spatial
# context. Removing the last stage (or halving the widths of the last two) cuts parameters and step time
# markedly and, on CIFAR-10 with a short budget, keeps or raises accuracy (fewer parameters to fit, less
# over-fitting); channels-last and mixed precision on a GPU cut kernel time further, and a faster data path
# (workers, the device-side pipeline) removes the data-loading share. The student cites their own rows.
#
# **Mark scheme (3 points).** 1: names the dominant category per network from their table. 1: a concrete,
# small change with a reason (wasted late stages at 32 px, widths, memory format, data path). 1: measured
# evidence (step time and accuracy) for it.
# ### END SOLUTION

# %% [markdown]
# ## References
#
# * Ioffe & Szegedy, *Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate
#   Shift*, 2015.
# * Misra, *Mish: A Self Regularized Non-Monotonic Activation Function*, 2019.
# * Simonyan & Zisserman, *Very Deep Convolutional Networks for Large-Scale Image Recognition*, 2015.
# * Zeiler & Fergus, *Visualizing and Understanding Convolutional Networks*, 2014.
# * PyTorch, `torch.nn.utils.fusion.fuse_conv_bn_eval` and the `torch.profiler` recipes.
