"""The modality registry: what each modality's Task says of itself."""

from tunelab.tasks import IMAGES, TASKS, TEXTS


def test_each_modality_names_its_own_library_and_example():
    assert {t.library for t in TASKS.values()} == {"timm", "transformers"}
    assert (IMAGES.noun, IMAGES.library, TEXTS.noun, TEXTS.library) == ("image", "timm", "text", "transformers")
    assert IMAGES.augment_presets and not TEXTS.augment_presets  # texts have no augmentation to tune
    assert TEXTS.few_shot and not IMAGES.few_shot


def test_labelled_data_is_each_modality_s_own_rule(tmp_path):
    classes, flat = tmp_path / "classes", tmp_path / "flat"
    (classes / "cat").mkdir(parents=True)
    flat.mkdir()
    assert IMAGES.labelled(str(classes)) and IMAGES.labelled("fashion-mnist") and IMAGES.labelled("x.csv")
    assert not IMAGES.labelled(str(flat)) and not IMAGES.labelled("x.jsonl")
    assert TEXTS.labelled("x.jsonl") and TEXTS.labelled("x.csv") and TEXTS.labelled("rotten-tomatoes")
    assert not TEXTS.labelled("x.txt") and not TEXTS.labelled(str(classes))
