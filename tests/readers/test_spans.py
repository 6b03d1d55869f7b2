import warnings

import pytest
from spacy.tokens import Span

from spacy_kbnlp.readers.spans import (AlignmentStats, align_char_span, check_token_span,
                                       doc_from_tokens, set_ents)


@pytest.fixture
def doc(nlp):
    # tokens: "New" "Yorkers" "love" "pizza" "."
    return nlp.make_doc("New Yorkers love pizza.")


def test_exact_span_counts_exact(doc):
    stats = AlignmentStats(reader="t")
    span = align_char_span(doc, 0, 11, stats=stats, loc="f:1")
    assert span.text == "New Yorkers"
    assert (stats.char_spans, stats.exact, stats.misaligned) == (1, 1, 0)


def test_expand_subword_to_whole_token(doc):
    stats = AlignmentStats(reader="t")
    # "York" is a prefix of the token "Yorkers"
    span = align_char_span(doc, 4, 8, policy="expand", stats=stats, loc="f:1", label="X",
                           kb_id="Q60")
    assert (span.start, span.end, span.text) == (1, 2, "Yorkers")
    assert span.label_ == "X" and span.kb_id_ == "Q60"
    assert stats.expanded == 1 and stats.exact == 0
    assert stats.examples == ["f:1 [4, 8) 'York' -> expanded"]


def test_contract_keeps_inner_tokens_and_drops_empty(doc):
    stats = AlignmentStats(reader="t", policy="contract")
    # "ew Yorkers love" -> only "Yorkers love" is fully inside
    span = align_char_span(doc, 1, 16, policy="contract", stats=stats, loc="f:2")
    assert span.text == "Yorkers love"
    # "ork" lies inside one token: nothing is left, counted as dropped (not silent)
    assert align_char_span(doc, 5, 8, policy="contract", stats=stats, loc="f:3") is None
    assert (stats.contracted, stats.dropped, stats.char_spans) == (1, 1, 2)
    with pytest.warns(UserWarning, match="KBW050"):
        stats.warn()


def test_strict_raises_with_location(doc):
    with pytest.raises(ValueError, match=r"KBE056.*data\.jsonl:7.*\[4, 8\)"):
        align_char_span(doc, 4, 8, policy="strict", loc="data.jsonl:7")


@pytest.mark.parametrize("start,end", [(-1, 3), (3, 3), (5, 100), ("0", 3)])
def test_out_of_range_raises(doc, start, end):
    with pytest.raises(ValueError, match=r"KBE055.*x\.jsonl:3"):
        align_char_span(doc, start, end, loc="x.jsonl:3")


def test_check_token_span(doc):
    check_token_span(doc, 0, len(doc), "f:1")
    with pytest.raises(ValueError, match="KBE057"):
        check_token_span(doc, 2, len(doc) + 1, "f:1")


def test_set_ents_skips_overlaps_and_counts(doc):
    stats = AlignmentStats()
    spans = [Span(doc, 0, 2, label="A"), Span(doc, 1, 2, label="B"), Span(doc, 3, 4, label="C")]
    set_ents(doc, spans, stats)
    assert [e.text for e in doc.ents] == ["New Yorkers", "pizza"]
    assert stats.ents_skipped == 1


def test_no_warning_when_clean():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AlignmentStats().warn()


def test_doc_from_tokens_sentences(nlp):
    doc = doc_from_tokens(nlp, ["A", "b", ".", "C", "d"], sent_starts=[0, 3])
    assert doc.text == "A b . C d"
    assert [s.text for s in doc.sents] == ["A b .", "C d"]
