"""UCI loaders: the real files parse to the documented shapes and labels; quirks and missing files are handled."""
import numpy as np
import pytest
from conftest import shared_path

from rlo.experiments import uci


def test_ionosphere_real_file_has_351_rows_34_features_and_225_good():
    data = uci.load_ionosphere(shared_path("data", "uci", "ionosphere.data").parent)
    assert data.x.shape == (351, 34) and data.x.dtype == np.float64
    assert set(np.unique(data.y)) == {-1, 1}
    assert int((data.y == 1).sum()) == 225  # 'g' rows, counted in the file's documentation
    assert data.x[0, 2] == pytest.approx(0.99539)  # third value of the first line


def test_spectf_real_files_join_train_and_test_into_267_rows():
    folder = shared_path("data", "uci", "SPECTF.test").parent
    data = uci.load_spectf(folder)
    assert data.x.shape == (267, 44)
    assert int((data.y == 1).sum()) == 212 and int((data.y == -1).sum()) == 55
    train_first = (folder / "SPECTF.train").read_text().splitlines()[0].split(",")
    test_last = (folder / "SPECTF.test").read_text().splitlines()[-1].replace(" ", "").split(",")
    np.testing.assert_array_equal(data.x[0], np.array(train_first[1:], dtype=float))
    np.testing.assert_array_equal(data.x[-1], np.array(test_last[1:], dtype=float))


def test_madelon_real_files_join_train_and_valid_into_2600_rows():
    folder = shared_path("data", "uci", "madelon_valid.data").parent
    data = uci.load_madelon(folder)
    assert data.x.shape == (2600, 500)
    assert set(np.unique(data.y)) == {-1, 1}
    valid_labels = np.loadtxt(folder / "madelon_valid.labels")
    np.testing.assert_array_equal(data.y[2000:], valid_labels)
    first_valid = np.array((folder / "madelon_valid.data").read_text().split("\n")[0].split(), dtype=float)
    np.testing.assert_array_equal(data.x[2000], first_valid)


def test_wine_from_sklearn_matches_the_uci_file_and_is_cultivar_1_vs_rest():
    data = uci.load_wine()
    assert data.x.shape == (178, 13)
    assert int((data.y == 1).sum()) == 59 and int((data.y == -1).sum()) == 119
    table = np.loadtxt(shared_path("data", "uci", "wine.data"), delimiter=",")
    np.testing.assert_allclose(data.x, table[:, 1:])
    np.testing.assert_array_equal(data.y, np.where(table[:, 0] == 1, 1, -1))


def test_loaders_tolerate_crlf_comma_space_and_trailing_spaces(tmp_path):
    (tmp_path / "SPECTF.train").write_bytes(b"1," + b",".join([b"7"] * 44) + b"\r\n0," + b",".join([b"3"] * 44))
    (tmp_path / "SPECTF.test").write_bytes(b"0, " + b", ".join([b"5"] * 44) + b"\r\n")
    spectf = uci.load_spectf(tmp_path)
    np.testing.assert_array_equal(spectf.y, [1, -1, -1])
    np.testing.assert_array_equal(spectf.x[:, 0], [7, 3, 5])
    for split, labels in (("train", [1, -1, 1]), ("valid", [-1, 1])):
        rows = "".join(f"{r} " * 500 + "\n" for r in range(len(labels)))  # trailing space on every line
        (tmp_path / f"madelon_{split}.data").write_text(rows)
        (tmp_path / f"madelon_{split}.labels").write_text("".join(f"{v}\n" for v in labels))
    madelon = uci.load_madelon(tmp_path)
    assert madelon.x.shape == (5, 500)
    np.testing.assert_array_equal(madelon.x[:, 499], [0, 1, 2, 0, 1])
    np.testing.assert_array_equal(madelon.y, [1, -1, 1, -1, 1])


def test_missing_file_error_names_the_file_and_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ionosphere\.data") as error:
        uci.load_ionosphere(tmp_path)
    assert str(tmp_path) in str(error.value) and "--data-dir" in str(error.value)
    (tmp_path / "SPECTF.train").write_text("1," + ",".join(["1"] * 44) + "\n")
    with pytest.raises(FileNotFoundError, match=r"SPECTF\.test"):
        uci.load_spectf(tmp_path)


def test_malformed_rows_are_reported_with_file_and_line(tmp_path):
    (tmp_path / "ionosphere.data").write_text(",".join(["0.5"] * 34) + ",g\n" + ",".join(["0.5"] * 33) + ",b\n")
    with pytest.raises(ValueError, match=r"ionosphere\.data:2: expected 34 fields"):
        uci.load_ionosphere(tmp_path)
    (tmp_path / "ionosphere.data").write_text(",".join(["0.5"] * 34) + ",x\n")
    with pytest.raises(ValueError, match="class must be 'g' or 'b'"):
        uci.load_ionosphere(tmp_path)


def test_data_dir_env_var_is_used_when_no_folder_is_given(tmp_path, monkeypatch):
    (tmp_path / "ionosphere.data").write_text(",".join(["1"] * 34) + ",b\n" + ",".join(["2"] * 34) + ",g\n")
    monkeypatch.setenv(uci.DATA_DIR_ENV, str(tmp_path))
    data = uci.load_dataset("ionosphere")
    np.testing.assert_array_equal(data.y, [-1, 1])
    with pytest.raises(ValueError, match="unknown dataset 'iris'"):
        uci.load_dataset("iris")
