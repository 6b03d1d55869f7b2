import pytest
from spacy.lang.en import English

from spacy_kbnlp.core.windows import iter_passages, token_windows


@pytest.mark.parametrize(
    "n,length,stride,expected",
    [
        (0, 4, 2, []),
        (3, 4, 2, [(0, 3)]),
        (4, 4, 2, [(0, 4)]),
        (5, 4, 2, [(0, 4), (2, 5)]),
        (10, 4, 2, [(0, 4), (2, 6), (4, 8), (6, 10)]),
        (10, 4, 4, [(0, 4), (4, 8), (8, 10)]),
        (7, 3, 1, [(0, 3), (1, 4), (2, 5), (3, 6), (4, 7)]),
    ],
)
def test_token_windows(n, length, stride, expected):
    assert token_windows(n, length, stride) == expected


@pytest.mark.parametrize("n", [1, 31, 32, 33, 100, 1001])
def test_token_windows_cover_every_token(n):
    windows = token_windows(n, 32, 16)
    covered = set()
    for s, e in windows:
        assert 0 <= s < e <= n and e - s <= 32
        covered.update(range(s, e))
    assert covered == set(range(n))
    assert windows[-1][1] == n


@pytest.mark.parametrize("length,stride", [(0, 1), (4, 0), (4, 5), (-1, 1), (4.0, 2)])
def test_token_windows_bad_settings(length, stride):
    with pytest.raises(ValueError, match="KBE153"):
        token_windows(10, length, stride)


def test_iter_passages_skips_whitespace():
    nlp = English()
    doc = nlp("Ada Lovelace wrote notes .   \n\n   \n\n The engine")
    passages = list(iter_passages(doc, length=3, stride=3))
    assert [p.text.strip() for p in passages] == ["Ada Lovelace wrote", "notes .", "The engine"]
    assert list(iter_passages(nlp(""), 3, 3)) == []
    assert list(iter_passages(nlp("   "), 3, 3)) == []
