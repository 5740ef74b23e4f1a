"""Weights from the hubs without a network: Kaggle Models handles read from kagglehub's own cache
layout, timm names from the Hugging Face cache, and a clear, immediate error when neither holds them."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from tunelab.errors import ModelError
from tunelab.vision.backbones import create_backbone


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch):
    """The hub out of reach, as on a machine without network (HF_HUB_OFFLINE=1)."""
    from huggingface_hub import constants

    from tunelab import hub

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hub.hub_reachable.cache_clear()
    hub._kaggle_reachable.cache_clear()
    monkeypatch.setattr(hub, "_kaggle_reachable", lambda: False)  # the machine may have a network; tests must not use it
    yield
    hub.hub_reachable.cache_clear()


def _weights(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {k: v.contiguous() for k, v in timm.create_model("test_efficientnet").state_dict().items()}


def _kaggle_cache(root: Path, versions: dict[int, dict[str, torch.Tensor]]) -> None:
    """What kagglehub.model_download leaves: models/OWNER/MODEL/FRAMEWORK/VARIATION/VERSION/ and a
    VERSION.complete marker beside it."""
    base = root / "models" / "someone" / "tiny-effnet" / "pyTorch" / "default"
    for v, sd in versions.items():
        (base / str(v)).mkdir(parents=True)
        save_file(sd, str(base / str(v) / "model.safetensors"))
        (base / f"{v}.complete").touch()


def test_a_kaggle_handle_loads_from_kagglehubs_cache(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path))
    v1, v2 = _weights(1), _weights(2)
    _kaggle_cache(tmp_path, {1: v1, 2: v2})
    latest = create_backbone("test_efficientnet", weights="kaggle:someone/tiny-effnet/pyTorch/default")
    first = create_backbone("test_efficientnet", weights="kaggle:someone/tiny-effnet/pyTorch/default/1")
    key = "conv_stem.weight"
    assert torch.equal(latest.model.state_dict()[key], v2[key])  # unversioned: the highest cached version
    assert torch.equal(first.model.state_dict()[key], v1[key])
    assert latest.source.endswith("default/2/model.safetensors")


def test_a_kaggle_handle_not_cached_offline_says_what_to_do(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path))
    with pytest.raises(ModelError, match="not in kagglehub's cache and Kaggle is out of reach") as e:
        create_backbone("test_efficientnet", weights="kaggle:someone/absent/pyTorch/default")
    assert "point model.weights at the weights file itself" in str(e.value)
    with pytest.raises(ModelError, match="not a Kaggle Models handle"):
        create_backbone("test_efficientnet", weights="kaggle:just-a-name")


def test_offline_hub_weights_come_from_the_local_cache_or_fail_at_once(tmp_path, monkeypatch, offline):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelError, match="not on this machine and the hub is out of reach") as e:
        create_backbone("test_efficientnet", weights="hub")
    assert "model.weights" in str(e.value) and "kaggle:" in str(e.value)
    # the layout huggingface_hub writes: models--ORG--NAME/snapshots/REV/FILE and refs/main -> REV
    repo = tmp_path / "models--timm--test_efficientnet.r160_in1k"
    (repo / "snapshots" / "abc").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc")
    sd = _weights(3)
    save_file(sd, str(repo / "snapshots" / "abc" / "model.safetensors"))
    bb = create_backbone("test_efficientnet", weights="hub")
    assert torch.equal(bb.model.state_dict()["conv_stem.weight"], sd["conv_stem.weight"])


@pytest.mark.parametrize("pretrained", [True, False])
def test_hf_hub_with_a_url_says_it_takes_a_repo_id(pretrained, offline):
    """`hf-hub:https://huggingface.co/...` gave a huggingface_hub traceback (offline: from the cache
    lookup; online: from timm); a repo id that is not one is named before either runs."""
    url = "https://huggingface.co/timm/resnet18.a1_in1k"
    with pytest.raises(ModelError) as e:
        create_backbone(f"hf-hub:{url}", pretrained=pretrained)
    assert str(e.value) == (
        f"model.backbone: 'hf-hub:{url}' is not a hub model name: hf-hub: takes a hub repo id "
        "ORG/NAME (optionally @REVISION), not a URL or a path, e.g. hf-hub:timm/resnet18.a1_in1k; "
        "did you mean hf-hub:timm/resnet18.a1_in1k?"
    )
    for name in ("hf-hub:", "hf-hub:a/b/c", "hf-hub:../models/x"):
        with pytest.raises(ModelError, match=r"hf-hub: takes a hub repo id ORG/NAME \(optionally @REVISION\)"):
            create_backbone(name, pretrained=pretrained)


def test_hf_hub_with_a_repo_id_still_reaches_the_hub_cache(offline, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelError, match=r"'hf-hub:timm/none\.x@main' are not on this machine and the hub is out of reach"):
        create_backbone("hf-hub:timm/none.x@main", weights="hub")
