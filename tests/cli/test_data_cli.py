import io
import tarfile

import pytest

from spacy_kbnlp.cli.data import unpack_semeval


def _add(tar, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_unpack_semeval_layout_and_safety(tmp_path):
    tarball = tmp_path / "release.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        _add(tar, "SemEval2010_task8_all_data/SemEval2010_task8_training/TRAIN_FILE.TXT", b"1\t\"x\"\r\n")
        _add(tar, "SemEval2010_task8_all_data/SemEval2010_task8_testing_keys/TEST_FILE_FULL.TXT", b"8001\r\n")
        _add(tar, "SemEval2010_task8_all_data/SemEval2010_task8_scorer-v1.2/semeval2010_task8_scorer-v1.2.pl", b"perl")
        _add(tar, "../../escape/SemEval2010_task8_training/../../x.txt", b"no")
    out = tmp_path / "out"
    files = unpack_semeval(tarball, out)
    assert sorted(p.relative_to(out).as_posix() for p in files) == [
        "testing_keys/TEST_FILE_FULL.TXT", "training/TRAIN_FILE.TXT"]
    assert (out / "training" / "TRAIN_FILE.TXT").read_bytes() == b"1\t\"x\"\r\n"
    assert not (tmp_path / "escape").exists()


def test_unpack_semeval_errors(tmp_path):
    with pytest.raises(ValueError, match="KBE052"):
        unpack_semeval(tmp_path / "missing.tar.gz", tmp_path)
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz") as tar:
        _add(tar, "README", b"x")
    with pytest.raises(ValueError, match="KBE072"):
        unpack_semeval(empty, tmp_path / "o")
