"""User datasets parsed from small generated files: each layout, gray/RGB mixes, broken files, the cache."""

import numpy as np
import pytest
from PIL import Image

from visionsweep import data
from visionsweep.config import DataConfig


def save(path, colour=(200, 30, 30), size=(20, 12), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour if mode == "RGB" else colour[0]).save(path)
    return path


def config(tmp_path, dataset, **settings):
    return DataConfig(dataset=str(dataset), image_size=8, cache_dir=str(tmp_path / "cache"), **settings)


def test_class_folders_resize_and_count_gray_and_rgb(tmp_path):
    root = tmp_path / "folders"
    save(root / "cat" / "a.png")
    save(root / "cat" / "b.jpg", mode="L")
    save(root / "dog" / "c.bmp", colour=(90, 90, 90))  # RGB file with equal channels: counts as gray
    save(root / "dog" / "d.webp", colour=(10, 200, 10))
    (root / "dog" / "notes.txt").write_text("not an image")
    dataset = data.load(config(tmp_path, root))
    assert dataset.classes == ("cat", "dog") and dataset.labels.tolist() == [0, 0, 1, 1]
    assert dataset.images.shape == (4, 8, 8, 3) and not dataset.multilabel
    assert dataset.summary["gray_files"] == 2 and dataset.summary["colour_files"] == 2
    assert dataset.summary["channels"] == "rgb" and dataset.summary["converted"] == 2
    gray = data.load(config(tmp_path, root, channels="gray"))
    assert gray.images.shape == (4, 8, 8, 1) and gray.summary["converted"] == 2
    assert abs(int(gray.images[0, 0, 0, 0]) - round(0.299 * 200 + 0.587 * 30 + 0.114 * 30)) <= 1


def test_all_gray_folder_decodes_to_one_channel_under_auto(tmp_path):
    root = tmp_path / "gray"
    save(root / "a" / "1.png", mode="L")
    save(root / "b" / "2.png", colour=(5, 5, 5))
    assert data.load(config(tmp_path, root)).images.shape == (2, 8, 8, 1)


def test_multilabel_csv_with_labels_column(tmp_path):
    save(tmp_path / "img" / "x.png")
    save(tmp_path / "img" / "y.png")
    save(tmp_path / "img" / "z.png")
    table = tmp_path / "labels.csv"
    table.write_text("image,labels\nimg/x.png,sky;tree\nimg/y.png,\nimg/z.png,tree\n")
    dataset = data.load(config(tmp_path, table))
    assert dataset.multilabel and dataset.classes == ("sky", "tree")
    assert dataset.labels.tolist() == [[1, 1], [0, 0], [0, 1]] and dataset.labels.dtype == np.uint8


def test_multilabel_csv_with_01_columns_and_images_folder(tmp_path):
    save(tmp_path / "photos" / "x.png")
    save(tmp_path / "photos" / "y.png")
    table = tmp_path / "meta" / "labels.csv"
    table.parent.mkdir()
    table.write_text("path,sky,tree\nx.png,1,0\ny.png,0,0\n")
    dataset = data.load(config(tmp_path, table, images=str(tmp_path / "photos")))
    assert dataset.classes == ("sky", "tree") and dataset.labels.tolist() == [[1, 0], [0, 0]]
    table.write_text("path,sky,tree\nx.png,1,yes\n")
    with pytest.raises(data.DataError, match=r"row 2, column 'tree' = 'yes': expected 0 or 1"):
        data.load(config(tmp_path, table, images=str(tmp_path / "photos")))


def test_label_files_by_name_and_number(tmp_path):
    root = tmp_path / "set"
    for number in (1, 2, 17):
        save(root / "images" / f"im{number}.jpg")
    (root / "labels").mkdir()
    (root / "labels" / "cloud.txt").write_text("17\nim1.jpg\n")
    (root / "labels" / "sea.txt").write_text("1\n")
    dataset = data.load(config(tmp_path, root))
    assert dataset.classes == ("cloud", "sea")
    assert dataset.labels.tolist() == [[1, 1], [1, 0], [0, 0]]  # im1, im17, im2 (no label): sorted by name


def test_label_file_naming_a_missing_image_is_an_error_naming_both(tmp_path):
    root = tmp_path / "set"
    save(root / "images" / "im1.jpg")
    (root / "labels").mkdir()
    (root / "labels" / "sea.txt").write_text("im1.jpg\nim9.jpg\n")
    with pytest.raises(data.DataError, match=r"sea.txt, line 2: 'im9.jpg' names no image in .*images"):
        data.load(config(tmp_path, root))


def broken_folder(tmp_path):
    root = tmp_path / "broken"
    save(root / "a" / "good.png")
    whole = save(root / "a" / "cut.jpg", size=(64, 64))
    whole.write_bytes(whole.read_bytes()[: len(whole.read_bytes()) // 2])  # a truncated JPEG
    (root / "b").mkdir()
    (root / "b" / "empty.png").write_bytes(b"")
    save(root / "b" / "fine.png")
    return root


def test_bad_images_fail_naming_the_files(tmp_path):
    with pytest.raises(data.DataError, match=r"2 unreadable image file\(s\): .*cut.jpg.*empty.png"):
        data.load(config(tmp_path, broken_folder(tmp_path)))


def test_bad_images_skipped_are_listed(tmp_path):
    dataset = data.load(config(tmp_path, broken_folder(tmp_path), on_bad_image="skip"))
    assert dataset.labels.tolist() == [0, 1] and len(dataset.images) == 2
    assert [f.split(":")[0].rsplit("/", 1)[1] for f in dataset.bad_files] == ["cut.jpg", "empty.png"]
    assert dataset.summary["bad_files"] == 2


def test_decoding_in_parallel_matches_one_process_and_is_cached(tmp_path, monkeypatch):
    from visionsweep.data import _files

    root = tmp_path / "many"
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (10, 10, 3), dtype=np.uint8)).save(save(root / f"c{i % 3}" / f"{i}.png"))
    monkeypatch.setattr(_files, "CHUNK", 7)
    parallel = data.load(config(tmp_path, root, decode_workers=2))
    single = data.load(config(tmp_path / "other", root, decode_workers=1))
    np.testing.assert_array_equal(parallel.images, single.images)
    assert "cached" not in parallel.summary
    monkeypatch.setattr(_files, "decode", lambda *a: pytest.fail("a cached dataset must not be decoded again"))
    again = data.load(config(tmp_path, root, decode_workers=2))
    assert again.summary["cached"] and np.array_equal(again.images, parallel.images)
    assert again.fingerprint() == parallel.fingerprint()


def test_given_test_dataset_becomes_the_test_rows(tmp_path):
    save(tmp_path / "train" / "a" / "1.png")
    save(tmp_path / "train" / "a" / "2.png")
    save(tmp_path / "train" / "b" / "3.png")
    save(tmp_path / "train" / "b" / "4.png")
    save(tmp_path / "test" / "b" / "5.png")
    dataset = data.load(config(tmp_path, tmp_path / "train", test_dataset=str(tmp_path / "test")))
    assert dataset.test_rows.tolist() == [4] and dataset.labels.tolist() == [0, 0, 1, 1, 1]
