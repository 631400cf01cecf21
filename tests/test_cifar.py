"""CIFAR-10 from the official binary distribution: fixed-size records, no pickle, clear errors."""

import tarfile

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_cifar_files

from auditkit.cli import main
from auditkit.data.cifar import CIFAR_FOLDER, VEHICLES, load_cifar10_images
from auditkit.errors import DataError


@pytest.fixture
def files(tmp_path):
    written = write_cifar_files(tmp_path / CIFAR_FOLDER, records_per_file=30)
    return tmp_path, written


def _expected(written):
    labels = np.concatenate([labels for labels, _ in written])
    pixels = np.concatenate([pixels for _, pixels in written]) / 255.0
    return pixels, labels


@pytest.mark.parametrize("where", ["folder", "batches folder", "archive", "folder with archive"])
def test_the_binary_files_are_read_as_written(files, tmp_path, where):
    root, written = files
    archive = tmp_path / "archive" / "cifar-10-binary.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root / CIFAR_FOLDER, arcname=CIFAR_FOLDER)
    path = {"folder": root, "batches folder": root / CIFAR_FOLDER, "archive": archive, "folder with archive":
            archive.parent}[where]  # fmt: skip
    images, labels = load_cifar10_images(path)
    pixels, expected_labels = _expected(written)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_array_equal(images, pixels)  # channel-major (3, 32, 32), as the record stores it
    assert images.shape == (180, 3072) and 0 <= images.min() and images.max() <= 1


def test_auditkit_data_is_the_default_location(files, monkeypatch):
    root, written = files
    monkeypatch.setenv("AUDITKIT_DATA", str(root))
    assert len(load_cifar10_images()[0]) == 180
    monkeypatch.delenv("AUDITKIT_DATA")
    with pytest.raises(DataError, match=r"no data.path and no \$AUDITKIT_DATA: put the official CIFAR-10 binary"):
        load_cifar10_images()


def test_bad_files_are_named(tmp_path):
    folder = tmp_path / CIFAR_FOLDER
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"\x80\x04pickled")  # the Python version
    with pytest.raises(DataError, match="data_batch_1.bin \\(found the pickled Python version, which is refused\\)"):
        load_cifar10_images(tmp_path)
    (folder / "data_batch_1.bin").write_bytes(b"\x00" * 3000)
    with pytest.raises(DataError, match="3000 bytes is not a whole number of 3073-byte CIFAR-10 records"):
        load_cifar10_images(tmp_path)
    (folder / "data_batch_1.bin").write_bytes(b"\x0c" + b"\x00" * 3072)
    with pytest.raises(DataError, match="a label byte is 12; CIFAR-10 labels are 0-9"):
        load_cifar10_images(tmp_path)
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cifar-10-binary.tar.gz: not a readable .tar.gz"):
        load_cifar10_images(tmp_path)


def test_the_papers_task_runs_vehicles_against_animals(cifar_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("AUDITKIT_DATA", str(cifar_dir))
    scenario = tmp_path / "mine.yaml"
    scenario.write_text("extends: cifar_paper\ndata: {n_per_class: 10, test_per_class: 10}\n")
    checked = CliRunner().invoke(main, ["validate", str(scenario)])
    assert checked.exit_code == 0, checked.output
    from auditkit import load_scenario
    from auditkit.data.datasets import load_data

    data = load_data(load_scenario(scenario).data, 0)
    digits = np.concatenate([labels for labels, _ in write_cifar_files(tmp_path / "again")])
    assert data.image_shape == (3, 32, 32)
    assert (np.isin(digits[data.train_index], VEHICLES) == (data.train_y > 0)).all()
    monkeypatch.setenv("AUDITKIT_DATA", str(tmp_path / "nothing"))
    missing = CliRunner().invoke(main, ["validate", "cifar_paper"])
    assert missing.exit_code == 2 and "missing CIFAR-10 file" in missing.output and "$AUDITKIT_DATA" in missing.output
