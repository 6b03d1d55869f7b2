"""Shared helpers of the scorer and evaluate/score CLI tests."""
import spacy

# "Paris is the capital of France." / "Angela Merkel visited Rome in 2019." of
# tests/fixtures/readers/el.jsonl: right links for Paris, France, Merkel; Rome is
# mislinked (gold Q220), 2019 (gold DATETIME) and "capital" (no gold span) get a QID
RULER_LINKS = [("Paris", "Q90"), ("France", "Q142"), ("Angela Merkel", "Q567"), ("Rome", "Q2"),
               ("2019", "Q2019"), ("capital", "Q5119")]


def ruler_nlp():
    """A blank pipeline whose entity_ruler links by pattern ids (``span.id_``: score
    with ``link_attr="id"``)."""
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "ENTITY", "pattern": p, "id": i} for p, i in RULER_LINKS])
    return nlp
