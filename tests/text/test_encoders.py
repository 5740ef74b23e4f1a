"""Every mainstream transformers architecture through one table: tiny random models (hidden 32, 3
layers) saved with a local tokenizer, a two-stage fit (head, then ``last_layers: 1``) with the
cache and without. Per row: the layer table, the cache engaged where promised (or the logged
reason), cached == uncached losses and weights, and a gradient for every parameter a stage trains.

A new architecture joins by adding a row to ``ROWS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

import tunelab
from conftest import FILLER, TEXT_WORDS, text_rows, write_text_csv
from tunelab.freezing import layer_rows
from watch import Watch, assert_trains_the_same, fit_uncached

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + FILLER + TEXT_WORDS["pos"] + TEXT_WORDS["neg"]
SIZES = {
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
    "vocab_size": len(VOCAB),
    "pad_token_id": 0,
}


def _config(arch: str) -> Any:
    import transformers as tr

    c = dict(SIZES)
    return {
        "bert": lambda: tr.BertConfig(**c),
        "roberta": lambda: tr.RobertaConfig(**c),
        "xlm-roberta": lambda: tr.XLMRobertaConfig(**c),
        "distilbert": lambda: tr.DistilBertConfig(
            vocab_size=len(VOCAB), dim=32, n_layers=3, n_heads=2, hidden_dim=64, max_position_embeddings=64, pad_token_id=0
        ),
        "electra": lambda: tr.ElectraConfig(embedding_size=16, **c),  # embeddings_project maps 16 -> 32
        # DeBERTa-v3's layout: relative positions only, a shared rel_embeddings table with its LayerNorm
        "deberta-v2": lambda: tr.DebertaV2Config(
            relative_attention=True,
            pos_att_type=["p2c", "c2p"],
            position_buckets=16,
            norm_rel_ebd="layer_norm",
            position_biased_input=False,
            **c,
        ),
        "mpnet": lambda: tr.MPNetConfig(**c),  # a shared relative_attention_bias
        "modernbert": lambda: tr.ModernBertConfig(**c, cls_token_id=2, sep_token_id=3, bos_token_id=2, eos_token_id=3),
        "albert": lambda: tr.AlbertConfig(embedding_size=16, **c),  # one layer's weights at every depth
        "gpt2": lambda: tr.GPT2Config(
            n_embd=32, n_layer=3, n_head=2, n_positions=64, vocab_size=300, bos_token_id=None, eos_token_id=None
        ),
        "qwen2": lambda: tr.Qwen2Config(num_key_value_heads=1, **c),
        "llama": lambda: tr.LlamaConfig(num_key_value_heads=1, **c),
    }[arch]()


def _wordpiece(folder: Path) -> None:
    from transformers import BertTokenizer

    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)


def _byte_bpe_without_pad(folder: Path) -> None:
    """GPT-2's kind of tokenizer: byte-level BPE, no special tokens added, and no pad token."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([t for t, _ in text_rows(40)], vocab_size=300, min_frequency=1, show_progress=False)
    PreTrainedTokenizerFast(tokenizer_object=bpe).save_pretrained(folder)


@dataclass
class Row:
    pooling: str
    cached: str  # what the log says of stage 2's cache
    embeddings_hold: list[str] = field(default_factory=list)  # shared or input-side parameters outside .embeddings
    tokenizer: Any = _wordpiece


SPLIT = "cache: the hidden states entering layer 2 (2 of 3 layers frozen)"
ROWS = {
    "bert": Row("pooler", SPLIT),
    "roberta": Row("cls", SPLIT),
    "xlm-roberta": Row("mean", SPLIT),
    "distilbert": Row("max", SPLIT),
    "electra": Row("mean", SPLIT, ["embeddings_project.weight"]),
    "deberta-v2": Row("mean", SPLIT, ["encoder.rel_embeddings.weight", "encoder.LayerNorm.weight"]),
    "mpnet": Row("mean", SPLIT, ["encoder.relative_attention_bias.weight"]),
    "modernbert": Row("mean", SPLIT),
    "albert": Row(
        "cls",
        "cache: off in this stage (AlbertModel runs the weights of 1 layer group(s) at all 3 depths",
        ["encoder.embedding_hidden_mapping_in.weight"],
    ),
    "gpt2": Row("last", SPLIT, ["wte.weight", "wpe.weight"], _byte_bpe_without_pad),
    "qwen2": Row("last", SPLIT, ["embed_tokens.weight"]),
    "llama": Row("mean", SPLIT, ["embed_tokens.weight"]),
}


@pytest.fixture(scope="session")
def encoder_folders(tmp_path_factory: pytest.TempPathFactory) -> Any:
    made: dict[str, Path] = {}

    def folder(arch: str) -> Path:
        if arch not in made:
            from transformers import AutoModel

            made[arch] = tmp_path_factory.mktemp(arch)
            ROWS[arch].tokenizer(made[arch])
            torch.manual_seed(0)
            AutoModel.from_config(_config(arch)).save_pretrained(made[arch])
        return made[arch]

    return folder


def _cfg(folder: Path, tmp_path: Path, pooling: str) -> dict[str, Any]:
    return {
        "run": {"name": "cached", "progress": False, "seed": 0, "dir": str(tmp_path / "runs")},
        "data": {
            "train": str(write_text_csv(tmp_path / "reviews.csv", text_rows(12))),
            "test_split": 0.2,
            "val_split": 0.2,
            "batch_size": 8,
            "refit": "never",
            "evaluate_test": False,
            "text": {"max_length": 16, "token_cache": str(tmp_path / "tokens")},
        },
        "model": {"backbone": str(folder), "head": {"pooling": pooling}},
        "cache": {"enabled": True, "autocast": "off"},  # fp32 both ways: equal to 1e-4
        "stages": [
            {"name": "head", "train": "head", "epochs": 1, "lr": 1e-2},
            {"name": "top", "train": ["head", {"last_layers": 1}], "epochs": 2, "lr": 1e-3},
        ],
    }


@pytest.mark.parametrize("arch", list(ROWS))
def test_every_encoder_fits_and_caches_what_it_promises(arch, encoder_folders, tmp_path):
    row = ROWS[arch]
    cfg = _cfg(encoder_folders(arch), tmp_path, row.pooling)
    watch = Watch()
    cached = tunelab.fit(cfg, hooks=watch.hooks())
    model = cached.model

    # the layer table: input side, the layers, what follows them; every parameter in one group
    groups = dict(model.groups())
    assert list(groups)[:4] == ["backbone.embeddings", "backbone.layers.0", "backbone.layers.1", "backbone.layers.2"] or (
        arch == "albert" and list(groups)[:2] == ["backbone.embeddings", "backbone.layers.0"]
    )
    assert sorted(n for names in groups.values() for n in names) == sorted(n for n, _ in model.named_parameters())
    for name in row.embeddings_hold:  # shared tables and projections freeze with the layers below the boundary
        assert f"backbone.model.{name}" in groups["backbone.embeddings"]
    rows = {r.name: r for r in layer_rows(model, 1e-3)}
    assert rows["backbone.embeddings"].trainable == "no" and rows["head.fc"].trainable == "yes"

    log = (cached.dir / "log.txt").read_text()
    assert "cache: pooled features (the whole encoder is frozen)" in log
    assert row.cached in log
    for stage, names in watch.trainable.items():
        assert names - watch.graded[stage] == set(), f"stage {stage + 1}: no gradient reached these"
        assert not watch.frozen_changed[stage], f"stage {stage + 1} changed frozen tensors"

    assert_trains_the_same(cached, fit_uncached(cfg))


# --- the bugs the table found, one by one --------------------------------------------------------


def _model(folder: Path, pooling: str = "mean") -> Any:
    from tunelab.config import ModelConfig
    from tunelab.tasks import build_model

    torch.manual_seed(0)
    return build_model(ModelConfig(backbone=str(folder), family="transformers", head={"pooling": pooling}), 2)


@pytest.mark.parametrize(
    "arch, shared",
    [
        ("deberta-v2", "encoder.rel_embeddings.weight"),
        ("mpnet", "encoder.relative_attention_bias.weight"),
        ("electra", "embeddings_project.weight"),
    ],
)
def test_what_the_layers_share_freezes_with_the_prefix_and_keys_the_cache(arch, shared, encoder_folders):
    from tunelab.freezing import select, set_trainable
    from tunelab.text.cache import cache_key, find_text_boundary
    from tunelab.text.data import Tokens

    model = _model(encoder_folders(arch))
    set_trainable(model, select(model, ["head", {"last_layers": 1}]))
    params = dict(model.named_parameters())
    assert not params[f"backbone.model.{shared}"].requires_grad  # it feeds the frozen layers 0 and 1 too
    boundary = find_text_boundary(model)
    tokens = Tokens(torch.tensor([[2, 10, 11, 3], [2, 12, 3, 0]]), torch.tensor([4, 3]))
    key = cache_key(model, boundary, tokens, torch.float32, 0)
    with torch.no_grad():
        params[f"backbone.model.{shared}"].mul_(1.01)
    assert cache_key(model, boundary, tokens, torch.float32, 0) != key


def test_last_token_pooling_finds_the_last_token_under_right_and_left_padding():
    from tunelab.text.backbone import last_token

    right = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    left = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]])
    assert last_token(right).tolist() == [2, 3, 0]
    assert last_token(left).tolist() == [3, 3, 3]


def test_a_decoder_reads_as_a_causal_encoder(encoder_folders):
    from tunelab.errors import ModelError

    gpt2 = _model(encoder_folders("gpt2"), "last")
    assert gpt2.backbone.causal and not _model(encoder_folders("bert")).backbone.causal
    with pytest.raises(ModelError, match="GPT2Model is causal: its first token has seen nothing after it; use last"):
        _model(encoder_folders("gpt2"), "cls")
    # the dropout GPT-2 applies to its embeddings belongs to the frozen input side: no dropout there
    from tunelab.freezing import select, set_train_mode, set_trainable

    set_trainable(gpt2, select(gpt2, ["head", {"last_layers": 1}]))
    set_train_mode(gpt2, train_bn=False)
    assert not gpt2.backbone.model.drop.training and gpt2.backbone.layers[2].training
    set_trainable(gpt2, select(gpt2, ["all"]))
    set_train_mode(gpt2, train_bn=False)
    assert gpt2.backbone.model.drop.training


def test_albert_trains_its_shared_layer_and_says_why_it_is_not_split(encoder_folders):
    from tunelab.errors import ConfigError
    from tunelab.freezing import select

    albert = _model(encoder_folders("albert"))
    assert not albert.backbone.splits and "at all 3 depths" in str(albert.backbone.split_reason)
    assert select(albert, [{"last_layers": 1}]) == set(dict(albert.groups())["backbone.layers.0"])
    with pytest.raises(ConfigError, match="last_layers: 2 but the backbone has 1 layers"):
        select(albert, [{"last_layers": 2}])


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The hub probe with its once-a-process answer forgotten before and after the test."""
    from huggingface_hub import constants

    from tunelab.text import _encoders

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    _encoders.hub_reachable.cache_clear()
    yield _encoders
    _encoders.hub_reachable.cache_clear()


class _Loader:
    """Records how from_pretrained was called; only the local cache holds ``cached``."""

    calls: ClassVar[list[dict[str, Any]]] = []

    @classmethod
    def from_pretrained(cls, path: str, **kwargs: Any) -> str:
        cls.calls.append(kwargs)
        if path == "org/cached" and kwargs.get("local_files_only"):
            return "from the cache"
        raise OSError(f"{path} not found")


def test_an_unreachable_hub_is_not_retried_and_the_error_says_how_to_point_at_local_weights(hub, monkeypatch):
    from huggingface_hub import constants

    from tunelab.errors import ModelError

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    _Loader.calls = []
    with pytest.raises(
        ModelError,
        match=r"'org/model': the hub is out of reach \(no network\?\) and its local cache "
        r"does not hold it; point model.backbone \(or model.weights\) at a local folder",
    ):
        hub.from_pretrained(_Loader, "org/model", "hub", "encoder")
    assert _Loader.calls == [{"local_files_only": True}]  # one look into the local cache, no download retried
    assert hub.from_pretrained(_Loader, "org/cached", "hub", "encoder") == "from the cache"


def test_a_reachable_hub_loads_as_usual(hub, monkeypatch):
    import huggingface_hub

    from tunelab.errors import ModelError

    class Session:
        def head(self, url: str, timeout: float) -> Any:
            return type("Response", (), {"status_code": 200})()

    monkeypatch.setattr(huggingface_hub, "get_session", lambda: Session())
    _Loader.calls = []
    with pytest.raises(ModelError, match=r"cannot load the encoder 'org/model' \(hub\): org/model not found; offline, point"):
        hub.from_pretrained(_Loader, "org/model", "hub", "encoder")
    assert _Loader.calls == [{}]


@pytest.mark.parametrize(
    "name,meant",
    [
        ("https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2/tree/main", "sentence-transformers/all-MiniLM-L6-v2"),
        ("hf-hub:org/model", "org/model"),
        ("./no/such/folder", None),
    ],
)
def test_a_url_or_hf_hub_name_for_a_text_encoder_says_what_is_valid(name, meant):
    from tunelab.errors import ModelError
    from tunelab.text._encoders import load_tokenizer

    with pytest.raises(ModelError) as e:
        load_tokenizer(name)
    assert str(e.value).startswith(
        f"text encoder {name!r} (model.backbone, data.text.tokenizer) is neither a local "
        "folder nor a hub model id; valid: a hub id ORG/NAME without hf-hub: and not a URL"
    )
    assert str(e.value).endswith(f"; did you mean {meant}?" if meant else "or minilm (packaged)")
