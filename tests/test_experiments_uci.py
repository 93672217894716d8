"""UCI loaders: the real files parse to the documented shapes and labels; quirks and missing files are handled."""

import numpy as np
import pytest
from conftest import shared_path

from experiments import uci


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


def _ionosphere_file(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ionosphere.data").write_text(",".join(["1"] * 34) + ",g\n")


@pytest.fixture
def places(tmp_path, monkeypatch):
    """$RLO_UCI_DIR, $RLO_SHARED_DIR/data/uci and ../shared/data/uci of the working directory, all distinct and
    not yet created."""
    work = tmp_path / "checkout"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv(uci.DATA_DIR_ENV, str(tmp_path / "env_uci"))
    monkeypatch.setenv(uci.SHARED_DIR_ENV, str(tmp_path / "env_shared"))
    return tmp_path / "env_uci", tmp_path / "env_shared" / "data" / "uci", tmp_path / "shared" / "data" / "uci"


def test_search_order_is_uci_dir_then_shared_dir_then_shared_beside_the_working_directory(places):
    assert [folder for _, folder in uci.search_dirs()] == list(places)
    for folder in places:
        _ionosphere_file(folder)
    for folder in places:  # each place is read once the ones before it no longer hold the file
        assert uci.load_ionosphere().source == str(folder / "ionosphere.data")
        (folder / "ionosphere.data").unlink()


def test_a_dataset_is_read_from_the_first_folder_holding_all_its_files(places):
    uci_dir, shared_uci, _ = places
    uci_dir.mkdir(parents=True)
    (uci_dir / "SPECTF.train").write_text("1," + ",".join(["1"] * 44) + "\n")  # half of the set
    shared_uci.mkdir(parents=True)
    for name in ("SPECTF.train", "SPECTF.test"):
        (shared_uci / name).write_text("0," + ",".join(["2"] * 44) + "\n")
    data = uci.load_spectf()
    assert data.source == str(shared_uci / "SPECTF.{train,test}") and data.x.shape == (2, 44)


def test_a_given_data_dir_is_the_only_place_searched(places, tmp_path):
    for folder in places:
        _ionosphere_file(folder)
    named = tmp_path / "named"
    with pytest.raises(FileNotFoundError) as error:
        uci.load_ionosphere(named)
    message = str(error.value)
    assert f"searched {named} (--data-dir: no such folder). Download" in message
    assert not any(str(folder) in message for folder in places)
    _ionosphere_file(named)
    assert uci.load_ionosphere(named).source == str(named / "ionosphere.data")


def test_missing_files_error_names_every_place_searched_and_what_to_put_there(places):
    uci_dir, shared_uci, beside = places
    uci_dir.mkdir()
    (uci_dir / "madelon_train.data").write_text("1\n")
    with pytest.raises(FileNotFoundError) as error:
        uci.load_madelon()
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(
        "madelon needs madelon_train.data, madelon_train.labels, madelon_valid.data, "
        "madelon_valid.labels in one folder; searched "
    )
    searched = [
        f"{uci_dir} ($RLO_UCI_DIR: lacks madelon_train.labels, madelon_valid.data, madelon_valid.labels)",
        f"{shared_uci} ($RLO_SHARED_DIR/data/uci: no such folder)",
        f"{beside} (../shared/data/uci from the current directory: no such folder)",
    ]
    assert "; ".join(searched) in message
    assert uci.UCI_URL in message and "dataset 'Madelon'" in message and "--data-dir=DIR" in message


def test_without_env_vars_only_shared_beside_the_working_directory_is_searched(tmp_path, monkeypatch):
    monkeypatch.setenv(uci.DATA_DIR_ENV, "")  # empty counts as unset
    monkeypatch.delenv(uci.SHARED_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert uci.search_dirs() == [
        ("../shared/data/uci from the current directory", tmp_path.parent / "shared" / "data" / "uci")
    ]
    assert not hasattr(uci, "REPO_ROOT")  # nothing is found relative to where the package is installed
