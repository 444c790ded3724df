import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vidconcept.errors import QueryError, UnknownNameError
from vidconcept.search.query import And, Concept, Not, Or, Weighted, concepts_of, parse
from vidconcept.search.rank import evaluate, rank


@pytest.mark.parametrize(
    "text, expected",
    [
        ("dog", Concept("dog")),
        ("dog AND cat", And((Concept("dog"), Concept("cat")))),
        ("dog and cat", And((Concept("dog"), Concept("cat")))),
        ("dog cat", And((Concept("dog"), Concept("cat")))),
        ("dog OR cat AND grass", Or((Concept("dog"), And((Concept("cat"), Concept("grass")))))),
        ("dog AND outdoor NOT night", And((Concept("dog"), Concept("outdoor"), Not(Concept("night"))))),
        ("(dog OR cat) AND grass", And((Or((Concept("dog"), Concept("cat"))), Concept("grass")))),
        ("NOT NOT dog", Not(Not(Concept("dog")))),
        ("2*dog + cat", Weighted(((2.0, Concept("dog")), (1.0, Concept("cat"))))),
        ('"golden retriever" OR cat', Or((Concept("golden retriever"), Concept("cat")))),
        ("great_white_shark", Concept("great_white_shark")),
    ],
    ids=["single", "and", "lowercase-and", "implicit-and", "precedence", "not", "parens", "double-not",
         "weighted", "quoted", "underscore"],
)
def test_parse(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize(
    "text, fragment",
    [("", "empty query"), ("   ", "empty query"), ("dog AND", "ends too early"), ("(dog", "expected rp"),
     ("dog)", "unexpected ')'"), ("OR dog", "expected a concept"), ('"dog', "unclosed quote"),
     ("0*dog", "must be positive"), ("2 dog", "expected star"), ("(" * 60 + "dog" + ")" * 60, "deeper")],
    ids=["empty", "blank", "dangling-and", "unclosed-paren", "extra-paren", "leading-or", "open-quote",
         "zero-weight", "number-without-star", "deep"],
)
def test_parse_errors(text, fragment):
    with pytest.raises(QueryError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        parse(text)


def test_concepts_of():
    assert concepts_of(parse("dog AND (cat OR dog) NOT grass + 2*cat")) == ["dog", "cat", "grass"]


def test_evaluate_fuzzy_logic():
    cols = {"a": np.array([0.2, 0.9]), "b": np.array([0.5, 0.4])}
    np.testing.assert_allclose(evaluate(parse("a AND b"), cols), [0.2, 0.4])
    np.testing.assert_allclose(evaluate(parse("a OR b"), cols), [0.5, 0.9])
    np.testing.assert_allclose(evaluate(parse("a NOT b"), cols), [0.2, 0.6])
    np.testing.assert_allclose(evaluate(parse("3*a + b"), cols), [(0.6 + 0.5) / 4, (2.7 + 0.4) / 4])


def test_rank_single_concept_uses_stored_order(filled):
    store, scores = filled
    hits, total = rank(store, parse("dog"), top=5)
    expected = np.sort(scores[:, 1])[::-1][:5]
    np.testing.assert_allclose([s for _, s in hits], expected, rtol=1e-6)
    assert total == len(scores)


def test_rank_boolean_matches_numpy(filled):
    store, scores = filled
    hits, total = rank(store, parse("cat AND dog NOT night"), top=100)
    expected = np.minimum(np.minimum(scores[:, 0], scores[:, 1]), 1 - scores[:, 3])
    np.testing.assert_allclose(sorted((s for _, s in hits), reverse=True), np.sort(expected)[::-1], rtol=1e-5)
    assert total == len(scores)


def test_rank_min_score_and_paging(filled):
    store, scores = filled
    all_hits, total = rank(store, parse("cat OR dog"), top=100, min_score=0.5)
    assert all(s >= 0.5 for _, s in all_hits) and total == len(all_hits)
    page2, _ = rank(store, parse("cat OR dog"), top=3, offset=3, min_score=0.5)
    assert page2 == all_hits[3:6]


def test_unknown_concept_suggests(filled):
    store, _ = filled
    with pytest.raises(UnknownNameError, match="did you mean 'dog'"):
        rank(store, parse("dgo"))


_words = st.sampled_from(["cat", "dog", "grass", "AND", "OR", "NOT", "(", ")", "+", "*", "2", '"', "x'; DROP TABLE shots;--", "é"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(_words, max_size=12).map(" ".join)))
def test_fuzzed_queries_either_rank_or_raise_clear_errors(filled_store_module, text):
    store = filled_store_module
    try:
        hits, total = rank(store, parse(text), top=5)
    except (QueryError, UnknownNameError) as exc:
        assert str(exc)
    else:
        assert total >= len(hits)
    assert store.shot_count() == 12  # nothing dropped


@pytest.fixture(scope="module")
def filled_store_module(tmp_path_factory):
    from conftest import fill_store
    from vidconcept.index.store import Store

    s = Store.open(tmp_path_factory.mktemp("idx"))
    fill_store(s)
    yield s
    s.close()


def test_rank_within_one_video(filled):
    store, scores = filled
    vid = store.video_by_path("/videos/v1.mp4")["id"]
    within = store.shot_ids_of(vid)
    for q in ["dog", "dog OR cat"]:
        hits, total = rank(store, parse(q), top=10, within=within)
        assert total == 4 and {s for s, _ in hits} == set(within.tolist())
