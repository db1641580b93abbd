"""Looking inside a CNN: hooked feature maps equal torchvision's feature extractor, filter grids, top-k names,
and the offline rule for pretrained weights (a local file works; a missing one fails at once)."""
import pytest
import torch
from torchvision.models import get_model
from torchvision.models.feature_extraction import create_feature_extractor

from vitcourse.analysis import features


@pytest.fixture(scope="module")
def resnet50():
    torch.manual_seed(0)
    return get_model("resnet50", weights=None).eval()


def test_hooked_feature_maps_equal_torchvision_feature_extractor(resnet50):
    images = torch.randn(2, 3, 64, 48)
    maps, logits = features.feature_maps(resnet50, images)
    extractor = create_feature_extractor(resnet50, {v: k for k, v in features.FEATURE_LAYERS.items()})
    with torch.no_grad():
        expected = extractor(images)
        torch.testing.assert_close(logits, resnet50(images))
    assert set(maps) == {"early", "middle", "late"}
    for label in maps:
        torch.testing.assert_close(maps[label], expected[label])
    assert maps["early"].shape == (2, 256, 16, 12) and maps["late"].shape == (2, 2048, 2, 2)
    assert not any(m._forward_hooks for m in resnet50.modules())  # the hooks are gone
    with pytest.raises(ValueError, match="has no module"):
        features.feature_maps(resnet50, images, {"x": "blocks.3"})


def test_filter_and_feature_map_grids(resnet50):
    assert features.first_conv(resnet50) is resnet50.conv1
    grid = features.filter_grid(resnet50, nrow=8)  # 64 filters of 7x7, padding 1
    assert grid.shape == (3, 8 * 8 + 1, 8 * 8 + 1) and grid.min() >= 0 and grid.max() <= 1
    grey = features.filter_grid(torch.randn(6, 1, 3, 3), nrow=3)
    assert grey.shape == (3, 2 * 4 + 1, 3 * 4 + 1) and torch.equal(grey[0], grey[1])
    tile = features.feature_map_grid(torch.randn(20, 5, 5), num_channels=16, nrow=8)
    assert tile.shape == (3, 2 * 6 + 1, 8 * 6 + 1)


def test_top_k_names_from_the_weights_metadata():
    categories = features.imagenet_categories("resnet50")
    assert len(categories) == 1000 and categories[0] == "tench"
    logits = torch.randn(3, 1000)
    result = features.top_k(logits, categories, k=5)
    probs, index = logits.softmax(-1).topk(5)
    assert [[name for name, _ in row] for row in result] == [[categories[i] for i in row] for row in index.tolist()]
    torch.testing.assert_close(torch.tensor([[p for _, p in row] for row in result]), probs)


def test_local_weights_file_is_used_and_a_missing_one_fails_fast(tmp_path, monkeypatch):
    torch.manual_seed(1)
    source = get_model("resnet18", weights=None)
    path = tmp_path / "resnet18-local.pth"
    torch.save(source.state_dict(), path)
    model, categories = features.load_pretrained("resnet18", weights_path=path)
    assert len(categories) == 1000 and not model.training
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), source.state_dict().values()))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: pytest.fail("tried to download"))
    with pytest.raises(features.WeightsUnavailableError, match=r"download\.pytorch\.org.*weights_path"):
        features.load_pretrained("resnet50")
    with pytest.raises(features.WeightsUnavailableError, match="does not exist"):
        features.load_pretrained("resnet50", weights_path=tmp_path / "nope.pth")
    import urllib.error

    def offline(*a, **k):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)  # download=True on an offline machine
    with pytest.raises(features.WeightsUnavailableError, match="download of .* failed.*Name or service"):
        features.load_pretrained("resnet50", download=True)


def test_offline_fallback_is_the_course_resnet18_with_the_same_stage_names():
    model = features.fallback_model()
    maps, logits = features.feature_maps(model, torch.randn(2, 3, 32, 32))
    assert maps["early"].shape == (2, 64, 32, 32) and maps["middle"].shape == (2, 128, 16, 16)
    assert maps["late"].shape == (2, 512, 4, 4) and logits.shape == (2, 10)
