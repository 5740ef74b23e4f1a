import os

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import deadline, write_images
from tunelab.errors import DataError
from tunelab.objectives import objective_for
from tunelab.vision.config import ImageDataConfig
from tunelab.vision.data import load_data, load_eval_set


def cfg(**kw):
    return ImageDataConfig(**{"image_size": 16, "val_split": 0.0, **kw})


def test_folder_source_classes_counts_and_decode(image_folder):
    s = load_data(cfg(train=str(image_folder), val_split=0.33))
    assert s.classes == ["cat", "dog", "fox"]
    assert s.train.images.dtype.is_floating_point is False and s.train.images.shape[1:] == (3, 16, 16)
    assert np.bincount(s.val.labels.numpy()).tolist() == [2, 2, 2]  # stratified
    assert np.bincount(s.train.labels.numpy()).tolist() == [4, 4, 4]
    table = s.count_table(objective_for("single_label"))
    assert "cat" in table and "total" in table


def test_samples_per_class_subsamples_train_only(image_folder):
    s = load_data(cfg(train=str(image_folder), val_split=0.33, samples_per_class=3))
    assert np.bincount(s.train.labels.numpy()).tolist() == [3, 3, 3]
    assert len(s.val) == 6


def test_split_is_seeded(image_folder):
    a = load_data(cfg(train=str(image_folder), val_split=0.5, seed=1))
    b = load_data(cfg(train=str(image_folder), val_split=0.5, seed=1))
    c = load_data(cfg(train=str(image_folder), val_split=0.5, seed=2))
    assert a.val.items == b.val.items and a.val.items != c.val.items


def test_csv_manifest_relative_paths_and_test_set(image_folder, tmp_path):
    files = sorted(image_folder.rglob("*.png"))
    man = tmp_path / "train.csv"
    man.write_text("path,label\n" + "".join(f"{f.relative_to(tmp_path)},{f.parent.name}\n" for f in files))
    write_images(tmp_path / "test", {"cat": 2, "dog": 2, "fox": 2}, size=24)  # not the training images
    s = load_data(cfg(train=str(man), test=str(tmp_path / "test")))
    assert s.classes == ["cat", "dog", "fox"] and len(s.train) == 18 and len(s.test) == 6
    # the training images as the test set: each is removed from it, which leaves nothing to test on
    with pytest.raises(DataError, match=r"data.test \(.*images\): every image is also in the training data"):
        load_data(cfg(train=str(man), test=str(image_folder)))


def test_corrupt_image_is_an_error_naming_the_file(image_folder):
    bad = image_folder / "dog" / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=r"cannot decode image .*dog/broken.jpg.*on_bad_image: skip"):
        load_data(cfg(train=str(image_folder)))


def test_corrupt_image_is_skipped_logged_and_counted(image_folder, caplog):
    bad = image_folder / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    s = load_data(cfg(train=str(image_folder), on_bad_image="skip"))
    assert s.skipped == [str(bad)]
    assert len(s.train) == 18 and str(bad) not in s.train.items
    assert "broken.png" in caplog.text


def test_empty_class_folder_is_an_error(image_folder):
    (image_folder / "emu").mkdir()
    with pytest.raises(DataError, match=r"class folder .*emu has no image files"):
        load_data(cfg(train=str(image_folder)))


def test_folder_without_class_subfolders(tmp_path):
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match=r"no class subfolders; expected .*flat/<class name>/<image files>"):
        load_data(cfg(train=str(tmp_path / "flat")))


def test_manifest_row_without_label_names_the_line(image_folder, tmp_path):
    f = next(image_folder.rglob("*.png"))
    man = tmp_path / "m.csv"
    man.write_text(f"path,label\n{f},cat\n{f},\n")
    with pytest.raises(DataError, match=r"m.csv, line 3: no label for .*img"):
        load_data(cfg(train=str(man)))


def test_manifest_needs_path_and_label_columns(tmp_path):
    man = tmp_path / "m.csv"
    man.write_text("file,class\na.png,cat\n")
    with pytest.raises(DataError, match=r"must name columns 'path' and 'label' \(found: file, class\)"):
        load_data(cfg(train=str(man)))


def test_eval_set_with_unknown_class_is_rejected(image_folder, tmp_path):
    write_images(tmp_path / "other", {"cat": 2, "zebra": 2})
    with pytest.raises(DataError, match=r"classes not in the training data: zebra"):
        load_eval_set(str(tmp_path / "other"), ["cat", "dog", "fox"], cfg())


def test_missing_source_lists_valid_kinds(tmp_path):
    with pytest.raises(DataError, match=r"data.train: '.*nowhere' does not exist; valid: a folder .*fashion-mnist, digits"):
        load_data(cfg(train=str(tmp_path / "nowhere")))


def test_too_few_images_for_a_stratified_split(tmp_path):
    write_images(tmp_path / "d", {"a": 4, "b": 1})
    with pytest.raises(DataError, match=r"classes with fewer than 2 images: b \(1\)"):
        load_data(cfg(train=str(tmp_path / "d"), val_split=0.3))


def test_digits_test_split_and_no_official_test(tmp_path):
    s = load_data(cfg(train="digits", test_split=0.2, val_split=0.1))
    assert len(s.test) + len(s.val) + len(s.train) == 1797
    with pytest.raises(DataError, match="digits has no official test split"):
        load_data(cfg(train="digits", test="digits"))


@pytest.mark.parametrize("test_cfg", [{"test_split": 0.2}, {"test": "TEST_FOLDER"}])
def test_unscored_test_set_is_held_out_all_the_same(image_folder, tmp_path, test_cfg):
    """evaluate_test: false (tune's trials) leaves the train and validation splits as they are."""
    write_images(tmp_path / "test", {"cat": 2, "dog": 2, "fox": 2})
    test_cfg = {k: str(tmp_path / "test") if v == "TEST_FOLDER" else v for k, v in test_cfg.items()}
    scored = load_data(cfg(train=str(image_folder), val_split=0.25, **test_cfg))
    held = load_data(cfg(train=str(image_folder), val_split=0.25, evaluate_test=False, **test_cfg))
    assert held.test is None and scored.test is not None
    assert held.train.items == scored.train.items and held.val.items == scored.val.items
    assert torch.equal(held.train.images, scored.train.images)


@pytest.mark.e2e
def test_fashion_mnist_official_splits():
    s = load_data(
        cfg(
            train="fashion-mnist",
            samples_per_class=2,
            val_split=0.1,
            val_samples_per_class=1,
            test_samples_per_class=3,
            image_size=28,
        )
    )
    assert s.classes[0] == "T-shirt/top" and len(s.train) == 20 and len(s.val) == 10 and len(s.test) == 30
    full = load_data(cfg(train="fashion-mnist", samples_per_class=1, image_size=8))
    assert len(full.test) == 10000


def test_decode_cache_reuses_files_and_notices_changes(image_folder, tmp_path, monkeypatch):
    store = tmp_path / "decoded"
    (image_folder / "dog" / "img0.png").write_bytes(b"not an image")
    cfg = ImageDataConfig(
        train=str(image_folder), val_split=0.0, test=None, image_size=16, decode_cache=str(store), on_bad_image="skip"
    )
    first = load_data(cfg)
    assert len(list(store.glob("*.done"))) == 1 and len(first.skipped) == 1
    import tunelab.vision.data._sources as sources

    def no_decoding(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(sources, "decode_file", no_decoding)
    again = load_data(cfg)  # memory-mapped, nothing decoded
    assert torch.equal(again.train.images, first.train.images) and again.train.items == first.train.items
    assert again.skipped == first.skipped
    monkeypatch.undo()
    (other,) = write_images(tmp_path / "other", {"x": 1}, size=24)  # changing a file gives another key
    (image_folder / "cat" / "img0.png").write_bytes(other.read_bytes())
    changed = load_data(cfg)
    assert len(list(store.glob("*.done"))) == 2 and not torch.equal(changed.train.images, first.train.images)


def test_decode_cache_ignores_a_half_written_file(tmp_path):
    store = tmp_path / "decoded"
    cfg = ImageDataConfig(train="digits", val_split=0.0, test_split=0.2, image_size=8, decode_cache=str(store))
    ref = load_data(cfg)
    for done in store.glob("*.done"):
        done.unlink()  # as if the run had been killed while writing
    for npy in store.glob("*.npy"):  # a new, half-written file (ref keeps its mapping of the old one)
        head = npy.read_bytes()[:200]
        npy.unlink()
        npy.write_bytes(head)
    again = load_data(cfg)
    assert torch.equal(again.train.images, ref.train.images) and torch.equal(again.test.images, ref.test.images)


@pytest.mark.parametrize("damage", ["cut short", "no header", "another shape", "record not JSON"])
def test_a_finished_decode_cache_file_that_is_damaged_is_decoded_again_with_a_warning(tmp_path, caplog, damage):
    """Was: a ValueError traceback (mmap length is greater than file size) for a .npy cut short by a
    full disk or a copy, with its .done marker in place."""
    store = tmp_path / "decoded"
    cfg = ImageDataConfig(train="digits", val_split=0.0, test_split=0.2, image_size=8, decode_cache=str(store))
    ref = load_data(cfg)
    for npy in store.glob("*.npy"):  # a new file (ref keeps its mapping of the old one)
        data = npy.read_bytes()
        npy.unlink()
        if damage == "cut short":
            npy.write_bytes(data[: len(data) // 2])
        elif damage == "no header":
            npy.write_bytes(b"\0" * len(data))
        elif damage == "another shape":
            np.save(npy, np.zeros((3, 3, 8, 8), dtype=np.uint8))
        else:
            npy.write_bytes(data)
            npy.with_suffix(".json").write_text("{not json")
    again = load_data(cfg)
    assert torch.equal(again.train.images, ref.train.images) and torch.equal(again.test.images, ref.test.images)
    assert "is damaged" in caplog.text and "decoding the images again" in caplog.text
    caplog.clear()
    load_data(cfg)
    assert "damaged" not in caplog.text  # the rewritten files are whole


def test_decode_store_replaces_files_by_rename_never_in_place(tmp_path):
    """Processes decoding the same data at once (tuning workers sharing a decode store) each write
    a file of their own and rename it into place: a file another process maps is never truncated."""
    store = tmp_path / "decoded"
    cfg = ImageDataConfig(train="digits", val_split=0.0, test_split=0.2, image_size=8, decode_cache=str(store))
    ref = load_data(cfg)
    inodes = {npy: npy.stat().st_ino for npy in store.glob("*.npy")}
    for done in store.glob("*.done"):
        done.unlink()  # another process finds no finished file and decodes again
    again = load_data(cfg)
    assert all(npy.stat().st_ino != ino for npy, ino in inodes.items())
    assert not list(store.glob("*.partial.npy"))
    assert torch.equal(again.train.images, ref.train.images)  # ref still reads its own, intact copy


def test_manifest_saved_with_a_byte_order_mark_is_read(image_folder, tmp_path):
    """Excel writes UTF-8 CSVs with a BOM; was: (found: \\ufeffpath, label)."""
    files = sorted(image_folder.rglob("*.png"))
    man = tmp_path / "excel.csv"
    man.write_bytes(("path,label\n" + "".join(f"{f},{f.parent.name}\n" for f in files)).encode("utf-8-sig"))
    assert man.read_bytes().startswith(b"\xef\xbb\xbf")
    s = load_data(cfg(train=str(man)))
    assert s.classes == ["cat", "dog", "fox"] and len(s.train) == 18


def test_appledouble_files_and_dangling_symlinks_are_skipped_and_counted(image_folder, caplog):
    """Was: the run stopped on ._name.jpg files; a symlink to nothing was dropped silently."""
    for c in ("cat", "dog"):
        (image_folder / c / "._img0.png").write_bytes(b"\x00\x05\x16\x07 Mac OS X metadata")
    (image_folder / "fox" / "gone.png").symlink_to(image_folder / "fox" / "deleted.png")
    s = load_data(cfg(train=str(image_folder)))
    assert len(s.train) == 18
    assert (
        f"{image_folder}: skipped 2 macOS metadata file(s) (._*) (e.g. {image_folder / 'cat' / '._img0.png'}), "
        f"1 symlink(s) pointing nowhere (e.g. {image_folder / 'fox' / 'gone.png'})"
    ) in caplog.text


def test_the_training_images_native_side_is_measured_before_resizing(tmp_path):
    """augment: auto decides crops by the source images' size, which the decoded set no longer shows."""
    root = tmp_path / "wide"
    write_images(root, {"a": 4, "b": 4}, size=20)
    Image.fromarray(np.zeros((30, 90, 3), dtype=np.uint8)).save(root / "a" / "wide.png")  # shorter side 30
    s = load_data(cfg(train=str(root), image_size=64))
    assert s.train.images.shape[-1] == 64 and s.train.native_side == 20
    assert s.train.concat(s.train).native_side == 20  # the refit's joined set keeps it
    assert load_data(cfg(train="digits", image_size=32, samples_per_class=5)).train.native_side == 8


def _manifest_with_a_fifo_and_dev_zero(image_folder, tmp_path):
    """A manifest of the images, a FIFO (opening it blocks) and /dev/zero (reading it never ends; its
    size, 0, is the FIFO's, so the duplicate check would hash both)."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    files = sorted(image_folder.rglob("*.png"))
    man = tmp_path / "train.csv"
    man.write_text("path,label\n" + "".join(f"{f},{f.parent.name}\n" for f in files) + f"{fifo},cat\n/dev/zero,dog\n")
    return man, fifo


def test_manifest_rows_that_are_no_regular_files_are_refused_or_skipped_and_named_never_read(image_folder, tmp_path, caplog):
    """Was: /dev/zero looped forever in the duplicate check, and a FIFO blocked in decoding."""
    man, fifo = _manifest_with_a_fifo_and_dev_zero(image_folder, tmp_path)
    with deadline(30):
        with pytest.raises(
            DataError,
            match=rf"cannot decode image {fifo}: it is a FIFO \(named pipe\), not a regular "
            "file; only image files are read. Fix or remove the file, or set data.on_bad_image: skip",
        ):
            load_data(cfg(train=str(man)))
        with pytest.raises(DataError, match=rf"cannot decode image {fifo}: it is a FIFO"):
            load_eval_set(str(man), ["cat", "dog", "fox"], cfg(train=str(image_folder)))  # evaluate --data
        s = load_data(cfg(train=str(man), on_bad_image="skip"))
        os.mkfifo(tmp_path / "pipe.csv")
        with pytest.raises(DataError, match=r"pipe.csv is neither a folder nor a .csv manifest \(it is a FIFO"):
            load_data(cfg(train=str(tmp_path / "pipe.csv")))
    assert len(s.train) == 18 and sorted(s.skipped) == sorted([str(fifo), "/dev/zero"])
    assert "it is a FIFO (named pipe), not a regular file" in caplog.text and "skipped 2 unreadable image(s)" in caplog.text


def test_a_fifo_and_a_link_to_dev_zero_in_a_class_folder_are_skipped_and_named(image_folder, caplog):
    os.mkfifo(image_folder / "cat" / "pipe.png")
    (image_folder / "dog" / "zero.png").symlink_to("/dev/zero")
    with deadline(30):
        s = load_data(cfg(train=str(image_folder)))
    assert len(s.train) == 18
    assert f"2 non-regular file(s) (FIFO, device or socket) (e.g. {image_folder / 'cat' / 'pipe.png'})" in caplog.text


def test_an_image_claiming_ten_billion_pixels_is_skipped_not_a_traceback(image_folder, tmp_path):
    """Was: DecompressionBombError from measuring the images' native size, after decoding had skipped it."""
    import io
    import struct
    import zlib

    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(buf, format="PNG")
    png = buf.getvalue()
    ihdr = png[12:16] + struct.pack(">II", 100_000, 100_000) + png[24:29]
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:])
    files = sorted(image_folder.rglob("*.png"))
    man = tmp_path / "train.csv"
    man.write_text("path,label\n" + "".join(f"{f},{f.parent.name}\n" for f in files) + f"{bomb},cat\n")
    s = load_data(cfg(train=str(man), on_bad_image="skip"))
    assert len(s.train) == 18 and s.skipped == [str(bomb)]
    with pytest.raises(DataError, match=rf"cannot decode image {bomb}: Image size \(10000000000 pixels\) exceeds limit"):
        load_data(cfg(train=str(man)))


@pytest.mark.parametrize(
    "content,message",
    [
        (
            "path,label\ncaf\u00e9.png,chat\n".encode("latin-1"),
            r"train.csv, line 2 \(byte offset 14\): the byte\(s\) b'\\xe9' "
            r"after 'caf' are not UTF-8; .* iconv -f latin1 -t utf-8",
        ),
        (b"\x89PNG\r\n\x1a\n\x00\x00", r"train.csv, line 1 \(byte offset 0\): the byte\(s\) b'\\x89'"),
        (b"path,label\na.png,cat\n\x00\x00,\x00\n", r"train.csv: holds NUL bytes"),
        (b"path,label\na.png,cat\n" + b"x" * 4096 + b"\x00,\x00\n", r"train.csv, line 3: a NUL byte; this is a binary file"),
    ],
)
def test_a_manifest_that_is_not_utf8_text_or_not_a_csv_is_an_error_naming_the_line(tmp_path, content, message):
    """Was: UnicodeDecodeError, 'embedded null byte' and _csv.Error tracebacks (found by tests/test_fuzz.py)."""
    man = tmp_path / "train.csv"
    man.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_data(cfg(train=str(man)))


def test_a_manifest_saved_as_utf16_unicode_text_is_read(image_folder, tmp_path):
    files = sorted(image_folder.rglob("*.png"))
    man = tmp_path / "unicode.csv"
    man.write_bytes(("path,label\n" + "".join(f"{f},{f.parent.name}\n" for f in files)).encode("utf-16"))
    assert len(load_data(cfg(train=str(man))).train) == 18
