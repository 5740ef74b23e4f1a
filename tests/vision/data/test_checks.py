"""Data checks before training: duplicates never leak into validation or test, one class is an
error, a short class under samples_per_class is named."""

import shutil

import numpy as np
import pytest

import tunelab
from conftest import write_images
from tunelab.errors import DataError
from tunelab.vision.config import ImageDataConfig
from tunelab.vision.data import load_data


def cfg(**kw):
    return ImageDataConfig(**{"image_size": 16, "val_split": 0.0, **kw})


def test_a_manifest_with_every_row_twice_leaks_nothing_into_validation(image_folder, tmp_path, caplog):
    """Was: accepted, 16 of 18 validation items also in training."""
    files = sorted(image_folder.rglob("*.png"))
    rows = "".join(f"{f},{f.parent.name}\n" for f in files)
    man = tmp_path / "twice.csv"
    man.write_text("path,label\n" + rows + rows)
    s = load_data(cfg(train=str(man), val_split=0.33))
    assert len(s.train) + len(s.val) == len(files)
    assert not set(s.train.items) & set(s.val.items)
    assert f"data.train ({man}): {len(files)} duplicate image(s) removed" in caplog.text


def test_the_same_bytes_under_another_name_count_as_one_image(image_folder, tmp_path, caplog):
    copy = image_folder / "dog" / "copy-of-cat0.png"
    shutil.copy(image_folder / "cat" / "img0.png", copy)
    s = load_data(cfg(train=str(image_folder), val_split=0.5))
    every = s.train.items + s.val.items
    assert len(every) == 18 and str(copy) not in every
    assert f"{copy} = {image_folder / 'cat' / 'img0.png'} (cat and dog)" in caplog.text


def test_test_images_that_are_also_training_images_are_removed_from_the_test_set(image_folder, tmp_path, caplog):
    test_dir = tmp_path / "test"
    write_images(test_dir, {"cat": 2, "dog": 2, "fox": 2}, size=24)  # other images than the training ones
    shutil.copy(image_folder / "fox" / "img3.png", test_dir / "fox" / "leaked.png")
    s = load_data(cfg(train=str(image_folder), test=str(test_dir)))
    assert len(s.test) == 6 and not any("leaked" in x for x in s.test.items)
    assert "data.test (" in caplog.text and "1 image(s) also in the training data" in caplog.text


def test_one_class_only_is_an_error(tmp_path, tiny_cfg):
    """Was: trained to accuracy 1.0 with rc 0."""
    write_images(tmp_path / "one", {"cat": 6})
    with pytest.raises(DataError, match=r"data.train \(.*one\): only one class \(cat\); classification needs at least"):
        load_data(cfg(train=str(tmp_path / "one")))
    tiny_cfg["data"]["train"] = str(tmp_path / "one")
    with pytest.raises(DataError, match="only one class"):
        tunelab.fit(tiny_cfg)


def test_more_samples_per_class_than_exist_names_the_short_classes(tmp_path, caplog):
    """Was: silently fewer."""
    write_images(tmp_path / "imgs", {"cat": 3, "dog": 8, "fox": 5})
    s = load_data(cfg(train=str(tmp_path / "imgs"), samples_per_class=6))
    assert np.bincount(s.train.labels.numpy()).tolist() == [3, 6, 5]
    assert "data.samples_per_class: 6, but 2 class(es) have fewer, and use all they have: cat (3), fox (5)" in caplog.text
