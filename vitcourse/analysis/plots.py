"""Plots of a training run and of a dataset: curves, confusion matrix, a grid of images per class.

Shape legend: B batch, C channels, H/W image height/width, K classes.

Every function returns a matplotlib Figure (shown inline in notebooks, saved with fig.savefig elsewhere).
On a machine without a display the Agg backend is selected before pyplot is imported.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import matplotlib

if not os.environ.get("DISPLAY") and "inline" not in matplotlib.get_backend().lower() \
        and "ipykernel" not in matplotlib.get_backend().lower():
    matplotlib.use("Agg")  # headless: render to files, never try to open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

IMAGES_PER_CLASS = 8  # columns of show_images' grid
CELL_INCHES = 1.0  # size of one image in show_images
MAX_ANNOTATED_CLASSES = 20  # confusion matrices larger than this are drawn without numbers


def plot_history(history: Sequence[dict], title: Optional[str] = None, augment=None):
    """Loss, accuracy and learning rate per epoch of `train(...).history`.

    `augment`: the run's AugmentConfig (`TrainConfig.augment`). The accuracy panel then says whether the
    train accuracy was measured on augmented images; without it the plot claims nothing about augmentation.
    """
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(13, 3.5))
    for ax, key in ((ax_loss, "loss"), (ax_acc, "acc")):
        ax.plot(epochs, [r[f"train_{key}"] for r in history], label="train", marker=".")
        val = [r.get(f"val_{key}", float("nan")) for r in history]
        if not all(np.isnan(val)):
            ax.plot(epochs, val, label="validation", marker=".")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss" if key == "loss" else "accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
    if augment is not None:
        ax_acc.set_title("train accuracy is on augmented images" if augment.active
                         else "no augmentation: train accuracy is on the training images", fontsize=9)
    ax_lr.plot(epochs, [r["lr"] for r in history], marker=".")
    ax_lr.set_xlabel("epoch")
    ax_lr.set_ylabel("learning rate (end of epoch)")
    ax_lr.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(cm, class_names: Optional[Sequence[str]] = None, normalize: bool = True,
                          title: Optional[str] = None):
    """Heat map of a (K, K) confusion matrix (rows: true class, columns: predicted), row-normalised."""
    cm = torch.as_tensor(cm).double().numpy()
    K = cm.shape[0]
    if normalize:
        cm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    names = list(class_names) if class_names is not None else [str(i) for i in range(K)]
    size = max(4.0, 0.45 * K)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if K <= MAX_ANNOTATED_CLASSES:
        ax.set_xticks(range(K), names, rotation=45, ha="right")
        ax.set_yticks(range(K), names)
        for i in range(K):
            for j in range(K):
                text = f"{cm[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > 0.5 * cm.max() else "black")
    ax.set_title(title or ("confusion matrix (row-normalised)" if normalize else "confusion matrix"))
    fig.tight_layout()
    return fig


def plot_confusion_grid(matrices: dict, class_names: Optional[Sequence[str]] = None, columns: int = 5):
    """One small row-normalised confusion matrix per model ({title: (K, K) counts}, rows true, columns predicted),
    all on one 0-1 colour scale with one colour bar, each titled with its accuracy: models compared at a glance."""
    names = list(matrices)
    rows = -(-len(names) // columns)
    cols = min(columns, len(names))
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols + 0.8, 2.3 * rows), squeeze=False, constrained_layout=True)
    shown = None
    for ax, name in zip(axes.ravel(), names):
        counts = torch.as_tensor(matrices[name]).double().numpy()
        K = counts.shape[0]
        accuracy = np.trace(counts) / max(counts.sum(), 1)
        shown = ax.imshow(counts / np.maximum(counts.sum(axis=1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
        ax.set_title(f"{name}: {accuracy:.1%}", fontsize=8)
        labels = list(class_names) if class_names is not None and K <= MAX_ANNOTATED_CLASSES else None
        ax.set_xticks(range(K), labels if labels else [""] * K, rotation=90, fontsize=6)
        ax.set_yticks(range(K), labels if labels else [""] * K, fontsize=6)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    if shown is not None:
        fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.8, label="share of the true class (rows sum to 1)")
    fig.supxlabel("predicted class", fontsize=8)
    fig.supylabel("true class", fontsize=8)
    return fig


def _to_display(images: torch.Tensor, mean=None, std=None) -> np.ndarray:
    """uint8 or normalised float (B, C, H, W) -> float (B, H, W, C) in [0, 1] for imshow."""
    x = torch.as_tensor(images).detach().cpu()
    if x.dtype == torch.uint8:
        x = x.float() / 255
    elif mean is not None and std is not None:
        x = x * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    return x.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def show_images(images: torch.Tensor, labels: torch.Tensor, class_names: Optional[Sequence[str]] = None,
                per_class: int = IMAGES_PER_CLASS, mean=None, std=None, predictions: Optional[torch.Tensor] = None):
    """A grid with one row per class and `per_class` of its images (uint8, or normalised with mean/std).

    With `predictions`, wrong predictions are titled in red with the predicted class.
    """
    labels = torch.as_tensor(labels).cpu()
    K = len(class_names) if class_names is not None else int(labels.max()) + 1
    names = list(class_names) if class_names is not None else [str(i) for i in range(K)]
    pics = _to_display(images, mean, std)
    grey = pics.shape[-1] == 1
    fig, axes = plt.subplots(K, per_class, figsize=(per_class * CELL_INCHES, K * CELL_INCHES), squeeze=False)
    for k in range(K):
        idx = torch.nonzero(labels == k).flatten()[:per_class].tolist()
        for j, ax in enumerate(axes[k]):
            ax.axis("off")
            if j >= len(idx):
                continue
            ax.imshow(pics[idx[j]][..., 0] if grey else pics[idx[j]], cmap="gray" if grey else None)
            if predictions is not None and int(predictions[idx[j]]) != k:
                ax.set_title(names[int(predictions[idx[j]])], color="red", fontsize=7)
        axes[k][0].text(-0.1, 0.5, names[k], transform=axes[k][0].transAxes, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    return fig


def similarity_limits(sims: torch.Tensor) -> tuple[float, float]:
    """Colour limits for cosine-similarity maps (N, N): the range of the off-diagonal values.

    A patch's similarity with itself is always 1, and on a fixed [-1, 1] scale the sin-cos tables' values
    (mostly between 0.3 and 1) all look alike. Spanning the similarities between *different* patches makes
    the structure (the 2-D table's cross, the 1-D table's bands) visible.
    """
    sims = torch.as_tensor(sims).double()
    off = sims[~torch.eye(sims.shape[0], dtype=torch.bool)]
    off = off[~torch.isnan(off)]
    lo, hi = float(off.min()), float(off.max())
    return (lo, hi) if hi > lo else (lo - 1e-6, hi + 1e-6)


def plot_similarity_maps(table: torch.Tensor, grid: tuple[int, int], queries: Sequence[int], title: str = ""):
    """For each query patch, the cosine similarity of its position embedding with every patch's, on the grid.

    Args:
        table: the position embeddings of the patches, of shape (N, D) with N = gh·gw, row-major.
        grid: (gh, gw).
        queries: patch indices (row-major) to draw one map for.
    One colour scale for all maps, spanning the similarities between different patches (`similarity_limits`).
    """
    gh, gw = grid
    sims = torch.nn.functional.cosine_similarity(table[:, None, :], table[None, :, :], dim=-1).detach().cpu()  # (N, N)
    vmin, vmax = similarity_limits(sims)
    fig, axes = plt.subplots(1, len(queries), figsize=(3 * len(queries) + 1, 3), squeeze=False)
    for ax, q in zip(axes[0], queries):
        im = ax.imshow(sims[q].reshape(gh, gw).numpy(), vmin=vmin, vmax=vmax, cmap="viridis")
        ax.set_title(f"patch {q}")
        ax.axis("off")
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label="cosine similarity")
    if title:
        fig.suptitle(title)
    return fig


def _overlay(ax, picture: np.ndarray, heat: np.ndarray, title: str = "", vmin=None, vmax=None):
    """An image with a heat map (any size: stretched over the image) on top; returns the heat map's image.

    vmin / vmax: the colour scale (default: the map's own range)."""
    grey = picture.shape[-1] == 1
    ax.imshow(picture[..., 0] if grey else picture, cmap="gray" if grey else None)
    h, w = picture.shape[:2]
    shown = ax.imshow(heat, cmap="jet", alpha=0.45, extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="bilinear",
                      vmin=vmin, vmax=vmax)
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    return shown


def plot_attention_overlays(images: torch.Tensor, maps: dict, title: str = "", grid: Optional[tuple[int, int]] = None):
    """One row per image: the image, then each named map (B, H'·W') of patch weights laid on the patch grid.

    `maps`: {name: (B, H'·W') tensor}, e.g. {"last layer": A[:, :, 0, 1:].mean(1), "rollout": R[:, 0, 1:]}.

    Every map is drawn on one colour scale, shared by the whole figure and stated on its colour bar: a patch's
    share of its map's total weight times the number of patches, so 1 is what uniform attention gives every
    patch (mid-scale: the scale runs from 0 to at least 2) and 3 is three times that. A map that varies by 5% then looks flat, as it is (a scale of its own per
    map, min to max, would paint it as sharply focused as one that varies 100-fold).
    """
    pics = _to_display(images)
    B = len(pics)
    scaled = {}
    for name, weights in maps.items():
        w = torch.as_tensor(weights).detach().double().cpu()[:B]  # (B, H'·W')
        scaled[name] = (w / w.sum(-1, keepdim=True) * w.shape[-1]).float()  # 1 = uniform
    # At least 2, so uniform attention (1) sits mid-scale: concentrated patches above it, neglected ones below.
    top = max(2.0, *(float(w.max()) for w in scaled.values()))
    fig, axes = plt.subplots(B, 1 + len(maps), figsize=((1 + len(maps)) * 1.6 + 0.9, B * 1.6), squeeze=False,
                             constrained_layout=True)
    shown = None
    for b in range(B):
        axes[b][0].imshow(pics[b][..., 0] if pics.shape[-1] == 1 else pics[b], cmap="gray" if pics.shape[-1] == 1 else None)
        axes[b][0].axis("off")
        for j, (name, w) in enumerate(scaled.items(), start=1):
            gh, gw = grid or (int(round(w.shape[-1] ** 0.5)),) * 2
            shown = _overlay(axes[b][j], pics[b], w[b].reshape(gh, gw).numpy(), name if b == 0 else "", 0.0, top)
    if shown is not None:
        fig.colorbar(shown, ax=axes[:, 1:].ravel().tolist(), shrink=0.8,
                     label="attention × patches (1 = uniform), one scale for all maps")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def plot_cams(images: torch.Tensor, cams: dict, labels: Optional[Sequence[int]] = None,
              class_names: Optional[Sequence[str]] = None):
    """One row per image: the image, then each model's Grad-CAM map (B, H, W) in [0, 1] on top of it."""
    pics = _to_display(images)
    B = len(pics)
    fig, axes = plt.subplots(B, 1 + len(cams), figsize=((1 + len(cams)) * 1.6, B * 1.6), squeeze=False)
    for b in range(B):
        axes[b][0].imshow(pics[b][..., 0] if pics.shape[-1] == 1 else pics[b], cmap="gray" if pics.shape[-1] == 1 else None)
        axes[b][0].axis("off")
        if labels is not None:
            k = int(labels[b])
            axes[b][0].set_title(class_names[k] if class_names is not None else str(k), fontsize=8)
        for j, (name, cam) in enumerate(cams.items(), start=1):
            _overlay(axes[b][j], pics[b], np.asarray(cam[b]), f"Grad-CAM {name}" if b == 0 else "")
    fig.tight_layout()
    return fig
