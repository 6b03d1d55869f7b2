"""benchmarks/coref.py: GAP pair decisions, P/R/F, and the Markdown table of the result JSON."""
import json
from pathlib import Path

import pytest
from spacy.tokens import Doc

from spacy_kbnlp.extensions import install_extensions, set_coref_clusters

from .conftest import load_benchmark

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "coref.py"


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("coref")


def _row(text, pronoun, a, b):
    return {"Text": text, "Pronoun": pronoun, "Pronoun-offset": text.index(" " + pronoun + " ") + 1,
            "A": a, "A-offset": text.index(a), "B": b, "B-offset": text.index(b)}


def test_gap_decisions_follow_predicted_clusters(bench, nlp):
    install_extensions()
    text = "Alice Smith met Bob there and she thanked him ."
    doc = nlp(text)
    # "Alice Smith" + "she" in one cluster, "Bob" alone with "him"
    set_coref_clusters(doc, [[(0, 2), (6, 7)], [(3, 4), (8, 9)]])
    assert bench.gap_decisions(doc, _row(text, "she", "Alice", "Bob")) == {"A": True, "B": False}
    assert bench.gap_decisions(doc, _row(text, "him", "Alice", "Bob")) == {"A": False, "B": True}
    # no cluster holds the pronoun: no link
    set_coref_clusters(doc, [[(0, 2), (3, 4)]])
    assert bench.gap_decisions(doc, _row(text, "she", "Alice", "Bob")) == {"A": False, "B": False}


def test_prf_counts(bench):
    # gold/pred pairs: one TP, one FP, one FN, one TN
    out = bench.prf([(True, True), (False, True), (True, False), (False, False)])
    assert out == {"p": 0.5, "r": 0.5, "f1": 0.5, "accuracy": 0.5, "pairs": 4}
    assert bench.prf([])["f1"] == 0.0


def test_table_renders_result_json(bench, tmp_path, monkeypatch, capsys):
    entry = {"muc": 0.5, "b3": 0.25, "ceafe": 0.125, "conll_f1": 0.2917, "lea": 0.1, "mention_f": 0.6,
             "docs_per_s": 2.0, "words_per_s": 900.0, "tokens_per_s": 1500.0, "n_docs": 2,
             "decoding": "greedy", "subset": "first 2 test docs", "load_avg": [1.0, 2.5]}
    peer = {k: v for k, v in entry.items() if k not in ("tokens_per_s", "subset", "load_avg", "decoding")}
    result = {"systems": {"ours": entry, "peer": peer},
              "speculative": {"system": "ours", "segments_compared": 7, "identical": True, "speedup": 4.0,
                              "forward_passes": {"greedy": 800, "speculative": 200}, "acceptance": 0.9}}
    path = tmp_path / "coref.json"
    path.write_text(json.dumps(result))
    monkeypatch.setattr(bench, "RESULT", path)
    monkeypatch.setattr(bench, "NOTES", tmp_path / "README_coref.md")  # not the real notes
    bench.main(["table"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == ("| ours | greedy | 2 (first 2 test docs) | 50.0 | 25.0 | 12.5 | 29.2 | 10.0 | 60.0 "
                        "| 2.000 | 900 | 1500 | 1.0 / 2.5 |")
    assert lines[3] == "| peer | - | 2 | 50.0 | 25.0 | 12.5 | 29.2 | 10.0 | 60.0 | 2.000 | 900 | - | - |"
    assert "identical output True, speed-up 4.00x docs/s" in lines[5]
    assert "800 -> 200" in lines[5]


def test_table_renders_dev_and_compact_sections(bench, tmp_path, monkeypatch, capsys):
    """Model-selection rows (``eval --section dev``) and the compact-rank rows get
    their own tables."""
    dev = {"conll_f1": 0.391, "lea": 0.257, "mention_f": 0.765, "docs_per_s": 0.037, "n_docs": 10,
           "decoding": "beam4", "load_avg": [1.4, 2.0]}
    row = {"mib": 4.5, "dev_docs": 10, "dev_conll_f1": 0.387, "dev_lea": 0.261, "demo_conll_f1": 0.319,
           "demo_lea": 0.174}
    result = {"systems": {}, "dev": {"ours_beam4": dev},
              "compact": {"ours": {"pipeline": "p", "rows": {"rank 32": row}}}}
    path = tmp_path / "coref.json"
    path.write_text(json.dumps(result))
    monkeypatch.setattr(bench, "RESULT", path)
    monkeypatch.setattr(bench, "NOTES", tmp_path / "README_coref.md")  # not the real notes
    bench.main(["table"])
    out = capsys.readouterr().out.splitlines()
    assert "| ours_beam4 | beam4 | 10 | 39.1 | 25.7 | 76.5 | 0.037 | 1.4 / 2.0 |" in out
    assert "| rank 32 | 4.5 | 10 | 38.7 | 26.1 | 31.9 | 17.4 |" in out


def test_spacy_log_curve_reads_console_table(bench):
    log = ("\x1b[38;5;4mℹ Initial learn rate: 0.0001\x1b[0m\n"
           "E    #       LOSS TRANS...  LOSS COREF  COREF_F  COREF_P  COREF_R  SCORE \n"
           "---  ------  -------------  ----------  -------  -------  -------  ------\n"
           "  0       0         168.32     1293.98     0.35     0.18    46.55    0.00\n"
           "  1     200         888.19     1719.37     8.89     9.69     8.22    0.09\n"
           "warnings 2 3\n")
    assert bench.spacy_log_curve(log) == [[0, 0.0], [200, 0.09]]
    assert bench.spacy_log_last_step(log) is None


def test_spacy_log_last_step_reads_the_step_clock(bench):
    log = ("[clock] step 130 epoch 0 51.2 min\n"
           "  0     100        4491.66    23986.62     0.15     7.41     0.08    0.00\n"
           "[clock] step 140 epoch 0 54.5 min\n"
           "[clock] time bound of 55.0 min reached at step 141: stopping\n")
    assert bench.spacy_log_curve(log) == [[100, 0.0]]
    assert bench.spacy_log_last_step(log) == 141


def test_peer_step_clock_logs_every_few_steps_and_stops_at_its_bound(monkeypatch, capsys):
    import torch

    monkeypatch.setenv("PEER_TORCH_THREADS", str(torch.get_num_threads()))
    peer = load_benchmark("peers/peer_functions")
    clock = peer.create_step_clock(every=10, max_minutes=0)
    clock(None, {"step": 20, "epoch": 1})
    clock(None, {"step": 21, "epoch": 1})
    assert capsys.readouterr().err.splitlines() == ["[clock] step 20 epoch 1 0.0 min"]
    bounded = peer.create_step_clock(every=10, max_minutes=1e-9)
    with pytest.raises(SystemExit) as stop:  # spaCy's train() saves model-last on the way out
        bounded(None, {"step": 7, "epoch": 0})
    assert stop.value.code == 0
    assert "reached at step 7" in capsys.readouterr().err


def test_peer_head_expansion_takes_the_subtree(nlp):
    peer = load_benchmark("peers/coref_predict")
    words = ["The", "old", "man", "saw", "his", "dog", "."]
    parsed = Doc(nlp.vocab, words=words, heads=[2, 2, 3, 3, 5, 3, 3],
                 deps=["det", "amod", "nsubj", "ROOT", "poss", "dobj", "punct"])
    pred = Doc(nlp.vocab, words=words)
    # head clusters: "man" with "his" (listed twice), "dog" alone
    pred.spans["coref_head_clusters_1"] = [pred[2:3], pred[4:5], pred[4:5]]
    pred.spans["coref_head_clusters_2"] = [pred[5:6]]
    assert peer.expand_heads(pred, parsed) == [[(0, 3), (4, 5)], [(4, 6)]]


def test_bundle_rank_is_stated_from_compact_json(bench):
    """The coreference bundle's rank is read from its compact.json wherever the docs
    state it: the generated note of README_coref.md, the README status row, and the
    rank the benchmarks project rebuilds it with."""
    import yaml

    repo = SCRIPT.parents[1]
    compact = json.loads((repo / "spacy_kbnlp" / "assets" / "seq2seq_coref" / "compact.json").read_text())
    note = bench.bundle_note()
    assert f"rank-{compact['rank']} difference" in note and f"--rank {compact['rank']}" in note
    notes = (repo / "benchmarks" / "README_coref.md").read_text(encoding="utf-8")
    start, end = "<!-- coref-bundle:start -->\n", "<!-- coref-bundle:end -->"
    assert notes[notes.index(start) + len(start): notes.index(end)] == note
    rows = bench.status_rows(json.loads((repo / "benchmarks" / "results" / "coref.json").read_text()))
    assert any(f"rank-{compact['rank']} difference" in r["component"] for r in rows)
    project = yaml.safe_load((repo / "benchmarks" / "project.yml").read_text())
    assert project["vars"]["coref_bundle_rank"] == compact["rank"]


def test_table_renders_ablation_rows_with_their_stride(bench, tmp_path, monkeypatch, capsys):
    """Ablation rows show the stride they ran with (128 for the runs before the
    column) and their speed next to the scores."""
    base = {"muc": 0.5702, "b3": 0.4239, "ceafe": 0.3448, "conll_f1": 0.4463, "lea": 0.3491,
            "mention_f": 0.7412, "docs_per_s": 0.3234, "clusters": 602, "max_cluster": 123,
            "mean_cluster": 5.59, "gold_clusters": 857, "gold_max_cluster": 75, "gold_mean_cluster": 4.46,
            "subset": "all docs of dev"}
    result = {"systems": {}, "ablation": {"ours_agreement_pronouns_names": base,
                                          "ours_agreement_pronouns_names_stride192": dict(base, stride=192)}}
    path = tmp_path / "coref.json"
    path.write_text(json.dumps(result))
    monkeypatch.setattr(bench, "RESULT", path)
    monkeypatch.setattr(bench, "NOTES", tmp_path / "README_coref.md")
    bench.main(["table"])
    out = capsys.readouterr().out.splitlines()
    scores = "57.0 | 42.4 | 34.5 | 44.6 | 34.9 | 74.1 | 0.323 | 602 | 123 | 5.6 | 857 / 75 / 4.5 |"
    assert f"| ours_agreement_pronouns_names | all docs of dev | 128 | {scores}" in out
    assert f"| ours_agreement_pronouns_names_stride192 | all docs of dev | 192 | {scores}" in out
    # (merge, pronoun agreement, name match, pair linker)
    assert bench.ABLATIONS["agreement_pronouns_names"] == ("agreement", True, True, False)
    assert bench.ABLATIONS["agreement_pronouns_names_relink"] == ("agreement", True, True, True)


def test_floor_pass_feeds_each_segment_its_decoded_tokens_in_one_pass(bench, monkeypatch):
    from spacy_kbnlp.core.bert_decoder import BertDecoderStepper

    nlp = bench.load_pipeline("bundled")
    model = nlp.get_pipe("seq2seq_coref").coref_model
    text = "Ada Lovelace met Charles Babbage in London. She wrote notes on his engine, and he praised them. "
    docs = [nlp.make_doc(text * 14), nlp.make_doc(text * 3)]
    record = []
    model.predict_docs(docs, stride=128, batch_segments=8, n_propose=4, record=record)
    assert len(record) >= 3  # the long doc is cut into segments
    seen = []
    real = BertDecoderStepper.step_ragged

    def spy(self, ids, lengths, fed=None):
        seen.append((ids.tolist(), list(lengths), list(fed)))
        return real(self, ids, lengths, fed)

    monkeypatch.setattr(BertDecoderStepper, "step_ragged", spy)
    assert bench.floor_pass(model, docs, 128, 8, record) == sum(len(r) for r in record)
    (ids, lengths, fed), = seen  # all segments fit one batch of 8: one decoder pass
    assert lengths == [0] * len(record)
    assert [row[:k] for row, k in zip(ids, fed)] == [[model.decoder_start] + r[:-1] for r in record]
    seen.clear()
    bench.floor_pass(model, docs, 128, 2, record)  # batches of 2 segments: a pass per batch
    assert [len(f) for _, _, f in seen] == [2] * (len(record) // 2) + [1] * (len(record) % 2)
    with pytest.raises(ValueError, match="decoded segments recorded for"):
        bench.floor_pass(model, docs, 128, 8, record[:-1])
