"""Issue 9, item 9: the augmentation chosen in a1 reaches a3, plot labels follow the recipe, similarity maps show the cross.

The notebook cells run here are the built notebooks' own sources, executed with the names their import
cell would give them.
"""
from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from data_utils import AugmentConfig, DeviceLoader, load_dataset  # noqa: E402
from coursecore import impl
from coursetools import nbbuild
from vitcourse.course import augment_choice
from vitcourse.analysis import plots  # noqa: E402
from vitcourse.training.recipes import CIFAR_AUGMENT, default_recipe  # noqa: E402

# A choice that differs from the course default in every field, so that no default passes for it.
CHOSEN = AugmentConfig(crop_prob=0.75, crop_padding=3, flip_prob=0.25, cutout_prob=0.3, cutout_size=6)


def _code_cell(assignment: str, needle: str) -> str:
    nb = nbformat.read(nbbuild.SOURCE_DIR / assignment / f"{assignment}.ipynb", as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code" and needle in c.source]
    assert cells, f"no code cell of {assignment} contains {needle!r}"
    return cells[0]


def _run(source: str, cwd, monkeypatch, **names) -> dict:
    monkeypatch.chdir(cwd)
    namespace = dict(names)
    exec(compile(source, "<cell>", "exec"), namespace)
    plt.close("all")
    return namespace


def _a3_recipe(folder, monkeypatch, capsys):
    cifar = SimpleNamespace(name="cifar10", num_classes=10, in_chans=3)
    ns = _run(_code_cell("a3_vit", "default_recipe(splits.name"), folder, monkeypatch, splits=cifar,
              default_recipe=default_recipe, dataclasses=dataclasses, augment_choice=augment_choice)
    return ns["train_config"], capsys.readouterr().out


def test_a3_trains_with_the_augmentation_chosen_in_a1(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(augment_choice.GRADING_ENV, raising=False)
    course = tmp_path / "vitcourse"  # MyDrive/vitcourse/ on Colab: one folder per assignment
    (course / "a1_data_patches").mkdir(parents=True)
    (course / "a3_vit").mkdir()
    # a1's own cell after the student's AUGMENT cell saves the choice (run on the digits: no download).
    _run(_code_cell("a1_data_patches", "augment_choice.save"), course / "a1_data_patches", monkeypatch,
         AUGMENT=CHOSEN, SEED=0, splits=load_dataset("digits"), AugmentConfig=AugmentConfig,
         DeviceLoader=DeviceLoader, show_images=plots.show_images, plt=plt, augment_choice=augment_choice)
    assert "saved for assignments 3 and 4" in capsys.readouterr().out
    train_config, out = _a3_recipe(course / "a3_vit", monkeypatch, capsys)
    assert train_config.augment == CHOSEN
    assert "your choice from assignment 1" in out


def test_a3_says_plainly_when_there_is_no_a1_choice(tmp_path, monkeypatch, capsys):
    (tmp_path / "a3_vit").mkdir()
    train_config, out = _a3_recipe(tmp_path / "a3_vit", monkeypatch, capsys)
    assert train_config.augment == CIFAR_AUGMENT
    assert "no choice from assignment 1 found" in out and augment_choice.CHOICE_FILE in out and str(tmp_path) in out


def test_nothing_is_saved_while_nbgrader_grades(tmp_path, monkeypatch):
    monkeypatch.setenv(augment_choice.GRADING_ENV, "1")
    (tmp_path / "a1").mkdir()
    assert augment_choice.save(CHOSEN, tmp_path / "a1") is None and not list(tmp_path.rglob("*.json"))


def test_a_broken_choice_file_falls_back_with_a_message(tmp_path):
    (tmp_path / "a3").mkdir()
    (tmp_path / augment_choice.CHOICE_FILE).write_text(json.dumps({"crop_prob": 7}))
    lines = []
    assert augment_choice.load("cifar10", CIFAR_AUGMENT, tmp_path / "a3", log=lines.append) == CIFAR_AUGMENT
    assert "is not a saved AugmentConfig" in lines[0]


def _figure_texts(fig) -> list[str]:
    texts = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        texts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        legend = ax.get_legend()
        texts += [t.get_text() for t in legend.get_texts()] if legend else []
    return texts


@pytest.mark.parametrize("augment,says", [(AugmentConfig.none(), False), (CIFAR_AUGMENT, True)])
def test_curve_labels_follow_the_recipe(augment, says):
    history = [dict(epoch=e, train_loss=1.0 / e, train_acc=0.1 * e, val_loss=1.2 / e, val_acc=0.09 * e, lr=1e-3)
               for e in (1, 2, 3)]
    fig = plots.plot_history(history, title="ViT", augment=augment)
    assert any("augmented" in t for t in _figure_texts(fig)) == says, _figure_texts(fig)
    plt.close(fig)
    # Without the recipe the plot claims nothing about augmentation.
    fig = plots.plot_history(history)
    assert not any("augment" in t for t in _figure_texts(fig))
    plt.close(fig)


def test_notebooks_pass_their_recipe_to_the_curves():
    assert "augment=train_config.augment" in _code_cell("a3_vit", "plot_history(")
    assert "augment=resnet_train.augment" in _code_cell("a4_resnet_tradeoffs", "plot_history(")


def test_2d_similarity_map_shows_the_cross():
    """On the drawn colour scale, patches in the query's row and column stand out from the others."""
    vit = impl.reference().ViT
    grid, dim, query = 8, 64, 27  # a1's sizes and centre patch
    table = vit.sincos_2d_embedding(grid, grid, dim)
    fig = plots.plot_similarity_maps(table, (grid, grid), (0, query, grid * grid - 1))
    image = fig.axes[1].get_images()[0]
    shown = np.asarray(image.norm(np.asarray(image.get_array())))  # colour position in [0, 1]
    row, col = divmod(query, grid)
    cross = np.zeros((grid, grid), bool)
    cross[row, :] = cross[:, col] = True
    cross[row, col] = False
    rest = ~cross
    rest[row, col] = False
    # Oracle: the cosine similarities themselves (torch), so the map is the one described.
    sims = torch.nn.functional.cosine_similarity(table[query][None], table, dim=-1).reshape(grid, grid)
    assert np.allclose(np.asarray(image.get_array()), sims.numpy(), atol=1e-6)
    gap = shown[cross].mean() - shown[rest].mean()
    assert gap >= 0.2, f"the cross is {gap:.2f} of the colour range above the rest: invisible"
    plt.close(fig)
    # The a1 notebook draws its maps with it.
    assert "plot_similarity_maps(" in _code_cell("a1_data_patches", "def similarity_maps")
