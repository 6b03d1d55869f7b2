"""The shared component base (pipeline/base.py), device placement (core/device.py),
settings changes through nlp.config, and the link annotation routine."""
import pytest
import spacy
import torch
from spacy.language import Language
from spacy.lang.en import English
from spacy.tokens import Span

from spacy_kbnlp.core import device as device_mod
from spacy_kbnlp.linking.annotate import set_links
from spacy_kbnlp.pipeline.base import KBPipe, update_settings

META = torch.device("meta")


class _Toy(KBPipe):
    """A component with one torch module; ``predict`` records where the weights were."""

    def __init__(self, vocab, name, size: int, device=None):
        self.vocab, self.name, self.scorer = vocab, name, None
        self.cfg = {"size": size, "device": device, "format_version": 1}
        self.layer = torch.nn.Linear(size, 2)
        self.seen = []
        self.moved = 0

    def check_settings(self):
        if self.cfg["size"] < 1:
            raise ValueError("size must be positive")

    def torch_modules(self):
        return [self.layer]

    def on_moved(self, device):
        self.moved += 1

    def predict(self, docs):
        self.seen.append(self.layer.weight.device.type)
        return [len(d) for d in docs]

    def set_annotations(self, docs, preds):
        for doc, n in zip(docs, preds):
            doc.user_data["n"] = n

    def serializers(self):
        return {"weights.txt": lambda p: p.write_text(str(self.layer.weight.shape[1]))}

    def deserializers(self):
        return {"weights.txt": lambda p: setattr(self, "restored", p.read_text())}


@Language.factory("kbnlp_test_toy", default_config={"size": 3, "device": None})
def _make_toy(nlp, name, size, device):
    return _Toy(nlp.vocab, name, size, device)


def test_weights_follow_the_current_device_lazily(monkeypatch):
    """Weights move to thinc's current device at the next call, whenever it changed
    (as ``require_gpu`` after ``spacy.load`` does); no CUDA needed: thinc's device
    is mocked as torch's ``meta`` device."""
    nlp = English()
    toy = nlp.add_pipe("kbnlp_test_toy")
    assert nlp("a b").user_data["n"] == 2 and toy.seen == ["cpu"] and toy.moved == 0
    thinc_device = {"now": META}
    monkeypatch.setattr(device_mod, "get_device", lambda override=None: torch.device(
        override) if override else thinc_device["now"])
    docs = list(nlp.pipe(["a b c", "d"], batch_size=1))
    assert [d.user_data["n"] for d in docs] == [3, 1]
    assert toy.seen == ["cpu", "meta", "meta"] and toy.moved == 1
    assert toy.layer.weight.device == META
    # a `device` setting overrides thinc's device
    thinc_device["now"] = torch.device("cpu")
    toy.layer = torch.nn.Linear(3, 2)
    nlp("x")
    assert toy.seen[-1] == "cpu" and toy.moved == 1
    toy.cfg["device"] = "meta"
    nlp("x")
    assert toy.seen[-1] == "meta" and toy.moved == 2


def test_place_and_same_device():
    layer = torch.nn.Linear(2, 2)
    assert device_mod.place([None, layer], torch.device("cpu")) is False
    assert device_mod.place([layer], META) is True and layer.weight.device == META
    assert device_mod.module_device(torch.nn.ReLU()) is None
    assert device_mod.same_device(torch.device("cpu"), torch.device("cpu"))
    assert not device_mod.same_device(torch.device("cpu"), META)


def test_place_thinc_moves_the_wrapped_module():
    from thinc.api import PyTorchWrapper_v3

    module = torch.nn.Linear(2, 2)
    model = PyTorchWrapper_v3(module)
    assert device_mod.place_thinc(model, module, torch.device("cpu")) is False
    assert device_mod.place_thinc(model, module, META) is True
    assert module.weight.device == META


def test_error_handler_batches_and_byte_round_trip():
    nlp = English()
    toy = nlp.add_pipe("kbnlp_test_toy")
    errors = []
    toy.set_error_handler(lambda name, pipe, docs, err: errors.append((name, len(docs))))
    toy.predict = lambda docs: 1 / 0
    docs = list(nlp.pipe(["a", "b", "c"], batch_size=2))
    assert len(docs) == 3 and errors == [("kbnlp_test_toy", 2), ("kbnlp_test_toy", 1)]
    data = nlp.get_pipe("kbnlp_test_toy").to_bytes()
    other = English().add_pipe("kbnlp_test_toy", config={"size": 5})
    other.from_bytes(data)
    assert other.restored == "3" and other.cfg["size"] == 5  # settings: the config's


def test_update_settings_changes_config_and_component(tmp_path):
    nlp = English()
    toy = nlp.add_pipe("kbnlp_test_toy")
    update_settings(nlp, {"components.kbnlp_test_toy.size": 4})
    assert toy.cfg["size"] == 4 and nlp.config["components"]["kbnlp_test_toy"]["size"] == 4
    nlp.to_disk(tmp_path)
    assert spacy.load(tmp_path).get_pipe("kbnlp_test_toy").cfg["size"] == 4
    with pytest.raises(ValueError, match="KBE160.*'colour'"):
        update_settings(nlp, {"components.kbnlp_test_toy.colour": 1})
    with pytest.raises(ValueError, match="KBE160.*no such component"):
        update_settings(nlp, {"components.nope.size": 1})
    with pytest.raises(ValueError, match="KBE160"):
        update_settings(nlp, {"training.max_steps": 1})
    with pytest.raises(ValueError, match="size must be positive"):
        update_settings(nlp, {"components.kbnlp_test_toy.size": 0})
    assert toy.cfg["size"] == 4 and nlp.get_pipe_config("kbnlp_test_toy")["size"] == 4


def test_set_links_spans_records_and_ents():
    nlp = English()
    doc = nlp.make_doc("Angela Merkel met Obama in Paris")
    doc.ents = [Span(doc, 0, 2, label="PERSON")]
    doc._.kb_links = [{"start": 3, "end": 4, "kb_id": "Q1", "label": "X", "score": 1.0,
                       "candidates": [], "key": "other"}]
    links = [(0, 2, "Q567", 0.9, [["Q567", 0.9]]), (1, 2, "Q2", 0.95, []),
             (5, 6, "Q90", 0.8, [["Q90", 0.8]])]
    set_links(doc, links, key="el", label="ENTITY", set_ents=True, overwrite_ents=False,
              labels={(5, 6): "GPE"})
    assert [(s.start, s.end, s.kb_id_, s.label_) for s in doc.spans["el"]] == [
        (0, 2, "Q567", "ENTITY"), (1, 2, "Q2", "ENTITY"), (5, 6, "Q90", "GPE")]
    assert [r["key"] for r in doc._.kb_links] == ["other", "el", "el", "el"]
    assert [(e.start, e.end, e.label_, e.kb_id_) for e in doc.ents] == [
        (0, 2, "PERSON", "Q567"), (5, 6, "GPE", "Q90")]
    set_links(doc, links, key="el", label="ENTITY", set_ents=True, overwrite_ents=True)
    assert [(e.start, e.end, e.kb_id_) for e in doc.ents] == [(1, 2, "Q2"), (5, 6, "Q90")]
    assert len(doc._.kb_links) == 4
