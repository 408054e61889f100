"""Late interaction: MaxSim, the MUVERA encoding, add_late/query_late in Chroma, and the emulator's multi-vectors."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
import requests

from conftest import CANARY_KEY, ChromaServer, http_client, png_bytes
from mmembed import ConfigurationError, InputError
from mmembed._late_chroma import _RESCORED, _halves, _join, _write_rows
from mmembed.chroma import (
    LATE_KEY,
    add_late,
    create_late_collection,
    delete_late_collection,
    function_class,
    query_late,
)
from mmembed.late import (
    ENCODING,
    MultiVectorIndex,
    MuveraSettings,
    _randomness,
    as_multivector,
    document_norm_bound,
    encode_documents,
    encode_queries,
    exact_scores,
    maxsim,
)
from mmembed.testing import Emulator, colour_photo
from mmembed.testing.multivectors import synthetic_corpus

ROOT = Path(__file__).resolve().parent.parent
JINA = "/v1/embeddings"
AUTH = {"Authorization": "Bearer jina_test"}


@pytest.fixture(scope="module")
def corpus() -> Any:
    return synthetic_corpus(documents=400, queries=20, rows=(10, 60), noise=0.6, seed=5)


def recall_at_10(result: dict[str, Any], corpus: Any) -> float:
    index = MultiVectorIndex(corpus.documents)
    found = []
    for q, query in enumerate(corpus.queries):
        truth = {f"d{i}" for i in index.top(query, 10)[0]}
        found.append(len(truth & set(result["ids"][q])) / 10)
    return float(np.mean(found))


def assert_exact(result: dict[str, Any], corpus: Any, queries: int | None = None) -> None:
    for q, query in enumerate(corpus.queries[:queries]):
        scores = result["maxsim_scores"][q]
        assert scores == sorted(scores, reverse=True)
        for id_, score, distance in zip(result["ids"][q], scores, result["distances"][q], strict=True):
            assert score == pytest.approx(maxsim(query, corpus.documents[int(id_[1:])]), abs=1e-9)
            assert distance == pytest.approx(1 - score / len(query), abs=1e-12)


# -- MaxSim -----------------------------------------------------------------------------------------
def test_maxsim_sums_each_query_rows_best_match() -> None:
    query = np.array([[1.0, 0.0], [0.0, 1.0]])
    doc = np.array([[0.6, 0.8], [1.0, 0.0], [-1.0, 0.0]])
    assert maxsim(query, doc) == pytest.approx(1.0 + 0.8)
    assert maxsim(doc, query) == pytest.approx(0.8 + 1.0 + 0.0)  # not symmetric
    assert list(exact_scores(query, [doc, doc[2:]])) == pytest.approx([1.8, -1.0 + 0.0])
    with pytest.raises(ValueError, match="one width"):
        maxsim(query, np.ones((2, 3)))


def test_index_scores_equal_maxsim_and_top_breaks_ties_by_index(corpus: Any) -> None:
    index = MultiVectorIndex(corpus.documents[:50])
    scores = index.scores(corpus.queries[0])
    assert scores == pytest.approx([maxsim(corpus.queries[0], d) for d in corpus.documents[:50]], abs=1e-12)
    twins = MultiVectorIndex([corpus.documents[0], corpus.documents[0], corpus.documents[1]])
    assert list(twins.top(corpus.queries[0], 2)[0]) in ([0, 1], [2, 0])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.ones(4), "2-D"),
        (np.ones((0, 4)), "non-empty"),
        (np.array([[1.0, np.nan, 0, 0]]), "NaN"),
        (np.zeros((2, 4)), "all-zero row"),
        (np.ones((2, 5)), "4 columns"),
        ([["a", "b"]], "numbers"),
    ],
)
def test_as_multivector_refuses_bad_input_naming_the_item(value: Any, message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        as_multivector(value, 7, 4)
    assert err.value.index == 7


def test_as_multivector_normalises_rows() -> None:
    rows = as_multivector([[3.0, 4.0], [0.0, 2.0]], 0)
    assert rows.dtype == np.float32
    assert np.linalg.norm(rows, axis=1) == pytest.approx([1.0, 1.0])


# -- MUVERA -----------------------------------------------------------------------------------------
def test_settings_serialise_and_refuse_what_they_did_not_write() -> None:
    settings = MuveraSettings(k_sim=4, d_proj=None, repetitions=3, d_final=512, seed=99)
    assert MuveraSettings.from_json(settings.to_json()) == settings
    assert settings.to_dict()["encoding"] == ENCODING
    assert settings.fde_dim(128) == 512 and MuveraSettings(k_sim=4, d_proj=None, repetitions=3).fde_dim(128) == 6144
    with pytest.raises(ConfigurationError, match="encoding"):
        MuveraSettings.from_dict({**settings.to_dict(), "encoding": "other-1"})
    with pytest.raises(ConfigurationError, match="unknown"):
        MuveraSettings.from_dict({**settings.to_dict(), "bits": 3})
    for bad in ({"k_sim": 0}, {"d_proj": 0}, {"repetitions": True}, {"seed": -1}, {"d_final": 2.5}):
        with pytest.raises(ConfigurationError):
            MuveraSettings(**bad)  # type: ignore[arg-type]


def test_encodings_are_reproducible_from_the_seed(corpus: Any) -> None:
    settings = MuveraSettings(seed=11)
    first = encode_documents(corpus.documents[:30], settings)
    assert first.shape == (30, settings.fde_dim(128)) and first.dtype == np.float32
    _randomness.cache_clear()
    assert np.array_equal(first, encode_documents(corpus.documents[:30], MuveraSettings(seed=11)))
    # one at a time equals all at once (chunking changes nothing)
    assert np.allclose(encode_documents(corpus.documents[3:4], settings)[0], first[3], atol=1e-6)
    assert not np.allclose(first, encode_documents(corpus.documents[:30], MuveraSettings(seed=12)))


def test_document_averages_fills_empty_buckets_and_query_sums() -> None:
    settings = MuveraSettings(k_sim=2, d_proj=None, repetitions=1, seed=3)
    rng = np.random.default_rng(0)
    points = rng.standard_normal((3, 8)).astype(np.float32)
    signs = points.astype(np.float64) @ _randomness(settings, 8).simhash > 0
    buckets = (signs * [1, 2]).sum(axis=1)
    expected = np.zeros((4, 8))
    for b in range(4):
        inside = buckets == b
        if inside.any():
            expected[b] = points[inside].mean(axis=0)
        else:  # the point whose sign bits differ least from the bucket's (the first on ties)
            distance = [bin(int(bucket) ^ b).count("1") for bucket in buckets]
            expected[b] = points[int(np.argmin(distance))]
    assert encode_documents([points], settings)[0] == pytest.approx(expected.ravel(), abs=1e-6)
    summed = np.zeros((4, 8))
    for point, b in zip(points, buckets, strict=True):
        summed[b] += point
    assert encode_queries([points], settings)[0] == pytest.approx(summed.ravel(), abs=1e-6)


def test_encoding_dot_product_tracks_maxsim(corpus: Any) -> None:
    settings = MuveraSettings()
    docs = encode_documents(corpus.documents, settings)
    queries = encode_queries(corpus.queries, settings)
    index = MultiVectorIndex(corpus.documents)
    correlations = [np.corrcoef(queries[q] @ docs.T, index.scores(query))[0, 1]
                    for q, query in enumerate(corpus.queries)]
    assert float(np.mean(correlations)) > 0.45  # unrelated vectors: about 0
    # a Count-Sketch to a quarter of the size keeps most of it
    small = MuveraSettings(d_final=settings.fde_dim(128) // 4)
    sketched = encode_queries(corpus.queries[:1], small) @ encode_documents(corpus.documents, small).T
    assert np.corrcoef(sketched[0], queries[0] @ docs.T)[0, 1] > 0.6


@pytest.mark.parametrize(
    "settings", [MuveraSettings(), MuveraSettings(k_sim=3, d_proj=None, repetitions=4), MuveraSettings(d_final=700)]
)
def test_document_encodings_stay_within_the_norm_bound(settings: MuveraSettings, corpus: Any) -> None:
    lengths = np.linalg.norm(encode_documents(corpus.documents[:100], settings), axis=1)
    bound = document_norm_bound(settings, 128)
    assert lengths.max() <= bound
    single = np.linalg.norm(encode_documents([corpus.documents[0][:1]], settings))  # one row fills every bucket
    assert single <= bound and lengths.max() > bound / 20  # a bound, and not a useless one


def test_encoders_refuse_mixed_widths_and_a_bare_array() -> None:
    with pytest.raises(InputError, match="share their width"):
        encode_documents([np.ones((2, 4)), np.ones((2, 5))], MuveraSettings())
    with pytest.raises(TypeError, match="list of multi-vectors"):
        encode_queries(np.ones((2, 4)), MuveraSettings())  # type: ignore[arg-type]


# -- Chroma -----------------------------------------------------------------------------------------
def fill(collection: Any, corpus: Any) -> None:
    ids = [f"d{i}" for i in range(len(corpus.documents))]
    metadatas = [{"n": i, "half": i % 2} for i in range(len(ids))]
    add_late(collection, ids, multivectors=corpus.documents, metadatas=metadatas)


def test_query_late_finds_the_exact_top_10_with_exact_scores(tmp_path: Path, corpus: Any) -> None:
    client = chromadb.PersistentClient(str(tmp_path / "db"))
    collection = create_late_collection(client, "pages", MuveraSettings(seed=4))
    fill(collection, corpus)
    assert json.loads(collection.metadata[LATE_KEY])["dim"] == 128
    # 200 candidates of 400 documents (the default 120 x would ask for them all)
    result = query_late(collection, query_multivectors=corpus.queries, n_results=10, over_fetch=20)
    assert recall_at_10(result, corpus) >= 0.95
    assert_exact(result, corpus)
    # the encodings alone (10 candidates for 10 results) already find half of it; chance would find 2.5 %
    assert recall_at_10(query_late(collection, query_multivectors=corpus.queries, over_fetch=1), corpus) > 0.3
    assert [m["n"] for m in result["metadatas"][0]] == [int(i[1:]) for i in result["ids"][0]]
    # where= filters the candidates
    odd = query_late(collection, query_multivectors=corpus.queries[:3], n_results=5, where={"half": 1})
    assert all(int(id_[1:]) % 2 == 1 for hits in odd["ids"] for id_ in hits) and len(odd["ids"][0]) == 5
    # adding an existing id again changes nothing, as Chroma's add
    add_late(collection, ["d0"], multivectors=[corpus.documents[1]])
    again = query_late(collection, query_multivectors=corpus.queries[:2], n_results=10, over_fetch=20)
    assert again["ids"] == result["ids"][:2] and again["maxsim_scores"] == result["maxsim_scores"][:2]


def test_halves_join_to_the_exact_floats() -> None:
    rng = np.random.default_rng(3)
    rows = np.concatenate([rng.standard_normal((50, 128)), [[0.0, -0.0, 1e-40, -3.4e38, np.pi] + [1.0] * 123]])
    rows = rows.astype(np.float32)
    high, low = _halves(rows)
    assert high.dtype == np.dtype("<u2") and low.dtype == np.dtype("<u2")
    assert _join(high, low).tobytes() == rows.tobytes()  # bit for bit
    rough = _join(high, None)  # bfloat16, truncated: under 2**-7 relative off, never larger in size
    assert np.all(np.abs(rough) <= np.abs(rows)) and np.allclose(rough, rows, rtol=2**-7, atol=1e-38)


def test_the_lower_halves_are_read_only_for_the_shortlist(
    tmp_path: Path, corpus: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chromadb.api.models.Collection import Collection

    client = chromadb.PersistentClient(str(tmp_path / "db"))
    collection = create_late_collection(client, "pages", MuveraSettings(seed=4))
    fill(collection, corpus)
    store = client.get_collection("pages.mmembed-mv")
    assert store.count() == 2 * len(corpus.documents)  # hi: and lo: for each id
    read: list[str] = []
    get = Collection.get

    def spy(self: Any, ids: Any = None, **kwargs: Any) -> Any:
        if self.name == "pages.mmembed-mv":
            read.extend(ids)
        return get(self, ids=ids, **kwargs)

    monkeypatch.setattr(Collection, "get", spy)
    result = query_late(collection, query_multivectors=corpus.queries[:1], n_results=10, over_fetch=20)
    assert sum(k.startswith("hi:") for k in read) == 200  # every candidate's upper half
    assert sum(k.startswith("lo:") for k in read) == 10 + _RESCORED  # the shortlist's lower halves
    monkeypatch.undo()
    assert_exact(result, corpus, queries=1)
    assert recall_at_10(query_late(collection, query_multivectors=corpus.queries, over_fetch=20), corpus) >= 0.95


def test_a_collection_of_whole_rows_layout_1_reads_the_same(tmp_path: Path, corpus: Any) -> None:
    """A collection written before the split (one ``<id>`` record of float32 rows) answers as before."""
    client = chromadb.PersistentClient(str(tmp_path / "db"))
    new = create_late_collection(client, "pages", MuveraSettings(seed=4))
    fill(new, corpus)
    old = create_late_collection(client, "older", MuveraSettings(seed=4), dim=128)
    late = json.loads(old.metadata[LATE_KEY])
    del late["layout"]
    old.modify(metadata={LATE_KEY: json.dumps(late)})
    ids = [f"d{i}" for i in range(len(corpus.documents))]
    old.add(ids=ids, embeddings=encode_documents(corpus.documents, MuveraSettings(seed=4)),  # type: ignore[arg-type]
            metadatas=[{"n": i, "half": i % 2} for i in range(len(ids))])
    _write_rows(client.get_collection("older.mmembed-mv"), ids, corpus.documents, 1)
    reopened_old = client.get_collection("older")
    before = query_late(reopened_old, query_multivectors=corpus.queries, n_results=10, over_fetch=20)
    after = query_late(new, query_multivectors=corpus.queries, n_results=10, over_fetch=20)
    assert before["ids"] == after["ids"] and before["metadatas"] == after["metadatas"]
    np.testing.assert_allclose(np.array(before["maxsim_scores"]), np.array(after["maxsim_scores"]), rtol=1e-12)
    late["layout"] = 3
    reopened_old.modify(metadata={LATE_KEY: json.dumps(late)})
    with pytest.raises(ConfigurationError, match="layout 3, which a newer mmembed wrote"):
        query_late(client.get_collection("older"), query_multivectors=corpus.queries[:1])


REOPEN = textwrap.dedent(
    """
    import json, sys
    import chromadb, numpy as np
    from mmembed.chroma import query_late
    data = np.load(sys.argv[2])
    queries = [data[f"q{i}"] for i in range(len(data.files))]
    client = chromadb.PersistentClient(sys.argv[1]) if not sys.argv[1].startswith("http") else chromadb.HttpClient(
        host=sys.argv[1].split(":")[1][2:], port=int(sys.argv[1].split(":")[2]))
    result = query_late(client.get_collection("pages"), query_multivectors=queries, n_results=10, over_fetch=20)
    print(json.dumps({"ids": result["ids"], "scores": result["maxsim_scores"]}))
    """
)


def reopened(where: str, corpus: Any, tmp_path: Path) -> dict[str, Any]:
    """query_late in a new process that opens the collection by name, with no function and no settings given."""
    queries = tmp_path / "queries.npz"
    np.savez(queries, **{f"q{i}": q for i, q in enumerate(corpus.queries)})
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", REOPEN, where, str(queries)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    answer: dict[str, Any] = json.loads(out.stdout)
    return answer


def test_reopened_in_a_new_process_gives_the_same_answers(tmp_path: Path, corpus: Any) -> None:
    client = chromadb.PersistentClient(str(tmp_path / "db"))
    collection = create_late_collection(client, "pages", MuveraSettings(seed=21))
    fill(collection, corpus)
    here = query_late(collection, query_multivectors=corpus.queries, n_results=10, over_fetch=20)
    there = reopened(str(tmp_path / "db"), corpus, tmp_path)
    assert there["ids"] == here["ids"]
    assert there["scores"] == here["maxsim_scores"]


def test_on_a_chroma_server(chroma_server: ChromaServer, tmp_path: Path, corpus: Any) -> None:
    with http_client(chroma_server) as client:
        collection = create_late_collection(client, "pages", MuveraSettings(seed=8), get_or_create=True)
        fill(collection, corpus)
        result = query_late(collection, query_multivectors=corpus.queries, n_results=10, over_fetch=20)
        assert recall_at_10(result, corpus) >= 0.95
        assert_exact(result, corpus)
        result = query_late(collection, query_multivectors=corpus.queries, n_results=10, over_fetch=20)
        there = reopened(chroma_server.url, corpus, tmp_path)
        assert there["ids"] == result["ids"] and there["scores"] == result["maxsim_scores"]
        delete_late_collection(client, "pages")
        assert "pages.mmembed-mv" not in [c.name for c in client.list_collections()]


def test_refusals_are_clear(corpus: Any) -> None:
    client = chromadb.EphemeralClient()
    plain = client.create_collection("plain-late-test", embedding_function=None)
    with pytest.raises(ConfigurationError, match="create_late_collection"):
        add_late(plain, ["a"], multivectors=[corpus.documents[0]])
    with pytest.raises(ConfigurationError, match="create_late_collection"):
        query_late(plain, query_multivectors=[corpus.queries[0]])
    late = create_late_collection(client, "late-refusals", dim=128)
    with pytest.raises(InputError, match="128 columns") as err:
        add_late(late, ["a", "b"], multivectors=[corpus.documents[0], np.ones((3, 64))])
    assert err.value.index == 1
    with pytest.raises(ValueError, match="exactly one of"):
        add_late(late, ["a"])
    with pytest.raises(ValueError, match="differ in length"):
        add_late(late, ["a", "b"], multivectors=[corpus.documents[0]])
    with pytest.raises(ValueError, match="unique"):
        add_late(late, ["a", "a"], multivectors=corpus.documents[:2])
    with pytest.raises(ValueError, match="n_results"):
        query_late(late, query_multivectors=[corpus.queries[0]], n_results=0)
    with pytest.raises(ValueError, match="query_multivectors, or query_texts"):
        query_late(late)
    with pytest.raises(InputError, match="NaN"):
        query_late(late, query_multivectors=[np.full((2, 128), np.nan)])
    assert late.count() == 0
    assert query_late(late, query_multivectors=[corpus.queries[0]])["ids"] == [[]]
    with pytest.raises(ConfigurationError, match="mmembed embedding function"):
        add_late(late, ["a"], items=["a red car"])  # made with no function: items need one


# -- items, through the collection's embedder (Embedder.embed_multi / embed_query_multi on Jina v4) -----
def red_pdf() -> bytes:
    pages = [colour_photo(c, size=(200, 260)) for c in ("blue", "red")]
    buf = io.BytesIO()
    pages[0].save(buf, "PDF", save_all=True, append_images=pages[1:])
    return buf.getvalue()


def test_items_are_embedded_by_the_collection_embedder_and_pdfs_go_in_by_page(
    mmembed_emulator: Emulator, tmp_path: Path
) -> None:
    ef = function_class("jina")(model="jina-embeddings-v4", base_url=mmembed_emulator.url, api_key=CANARY_KEY)
    client = chromadb.EphemeralClient()
    collection = create_late_collection(client, "late-items", embedding_function=ef)
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(red_pdf())
    photo = png_bytes(colour_photo("green", size=(120, 90)))
    add_late(collection, ["car", "sea", "photo", "report"], items=["a red car", "the blue sea", photo, pdf],
             metadatas=[None, None, {"by": "me"}, None])
    got = collection.get(include=["metadatas", "documents"])
    records = dict(zip(got["ids"], zip(got["metadatas"], got["documents"], strict=True), strict=True))
    assert records["car"] == ({"modality": "text"}, "a red car")
    assert records["photo"] == ({"modality": "image", "by": "me"}, None)
    pages = {id_: meta["page"] for id_, (meta, _) in records.items() if id_.startswith("report#")}
    assert sorted(pages.values()) == [1, 2] or set(pages.values()) == {1, 2}
    hits = query_late(collection, query_texts=["red"], n_results=10)
    assert hits["ids"][0][0] == "car"
    red_page = next(id_ for id_, page in pages.items() if page == 2 and "passage" not in records[id_][0])
    blue_page = next(id_ for id_, page in pages.items() if page == 1 and "passage" not in records[id_][0])
    ranked = hits["ids"][0]
    assert ranked.index(red_page) < ranked.index(blue_page)  # a hit names its page
    sent = [r.json for r in mmembed_emulator.requests if r.path == JINA]
    assert all(body["return_multivector"] is True and body["model"] == "jina-embeddings-v4" for body in sent)
    assert [body["task"] for body in sent] == ["retrieval.passage", "retrieval.query"]
    assert len(sent[0]["input"]) == 5  # two texts, the photo, the PDF's two pages (as images: v4 reads pages)
    red_hits = query_late(collection, query_images=[png_bytes(colour_photo("red", size=(64, 64)))], n_results=3)
    assert red_hits["ids"][0][0] == red_page


# -- the emulator's multi-vectors (Jina v4 return_multivector) --------------------------------------
def post(emulator: Emulator, **body: Any) -> requests.Response:
    return requests.post(emulator.url + JINA, json={"model": "jina-embeddings-v4", **body}, headers=AUTH, timeout=60)


def test_emulator_answers_one_unit_row_per_token_and_per_patch(mmembed_emulator: Emulator) -> None:
    photo = base64.b64encode(png_bytes(colour_photo("red", size=(64, 48)))).decode()
    reply = post(mmembed_emulator, task="retrieval.passage", return_multivector=True,
                 input=[{"text": "a red car, parked"}, {"image": photo}])
    assert reply.status_code == 200
    data = sorted(reply.json()["data"], key=lambda d: d["index"])
    assert [d["object"] for d in data] == ["embeddings", "embeddings"] and "embedding" not in data[0]
    text, image = (np.array(d["embeddings"]) for d in data)
    assert text.shape == (5, 128)  # a, red, car, ",", parked
    assert image.shape == (16, 128)  # a 4x4 grid of patches
    assert np.linalg.norm(np.vstack([text, image]), axis=1) == pytest.approx(1.0, abs=1e-6)
    again = sorted(post(mmembed_emulator, task="retrieval.passage", return_multivector=True,
                        input=[{"text": "a red car, parked"}]).json()["data"], key=lambda d: d["index"])
    assert again[0]["embeddings"] == data[0]["embeddings"]  # deterministic


def test_emulator_query_tokens_match_the_relevant_documents_tokens(mmembed_emulator: Emulator) -> None:
    def rows(task: str, *texts: str) -> list[np.ndarray]:
        reply = post(mmembed_emulator, task=task, return_multivector=True, input=list(texts))
        return [np.array(d["embeddings"]) for d in sorted(reply.json()["data"], key=lambda d: d["index"])]

    (query,) = rows("retrieval.query", "red car")
    car, sea, other = rows("retrieval.passage", "a red car on the road", "the blue sea", "green leaves and moss")
    assert maxsim(query, car) > maxsim(query, sea) + 0.3
    assert maxsim(query, car) > maxsim(query, other) + 0.3
    assert float(np.max(query @ car.T)) > 0.95  # "car" in the query is "car" in the document, nudged as a query
    photos = [base64.b64encode(png_bytes(colour_photo(c, size=(64, 64)))).decode() for c in ("red", "blue")]
    reply = post(mmembed_emulator, task="retrieval.passage", return_multivector=True,
                 input=[{"image": p} for p in photos])
    red, blue = (np.array(d["embeddings"]) for d in sorted(reply.json()["data"], key=lambda d: d["index"]))
    (word,) = rows("retrieval.query", "red")
    assert maxsim(word, red) > maxsim(word, blue) + 0.2  # a word finds the patches of its colour


def test_emulator_base64_rows_and_refusals(mmembed_emulator: Emulator) -> None:
    floats = post(mmembed_emulator, return_multivector=True, input=["red"]).json()["data"][0]["embeddings"]
    packed = post(mmembed_emulator, return_multivector=True, input=["red"], embedding_type="base64").json()
    row = np.frombuffer(base64.b64decode(packed["data"][0]["embeddings"][0]), dtype="<f4")
    assert row == pytest.approx(np.array(floats[0]), abs=1e-6)
    with_dims = post(mmembed_emulator, return_multivector=True, dimensions=128, input=["red"])
    assert with_dims.status_code == 422 and "dimensions" in with_dims.json()["detail"]
    other_model = requests.post(mmembed_emulator.url + JINA, headers=AUTH, timeout=60,
                                json={"model": "jina-clip-v2", "return_multivector": True, "input": ["red"]})
    assert other_model.status_code == 422 and "return_multivector" in other_model.json()["detail"]
    assert post(mmembed_emulator, return_multivector="yes", input=["red"]).status_code == 422
    single = post(mmembed_emulator, input=["red"]).json()["data"][0]
    assert single["object"] == "embedding" and len(single["embedding"]) == 2048  # unchanged without the flag


# -- the example -----------------------------------------------------------------------------------
def test_example_runs_offline() -> None:
    out = subprocess.run(
        [sys.executable, "-W", "error", str(ROOT / "examples" / "late_interaction.py")],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "query 'red car': car" in out.stdout
    assert "query_texts 'invoice due', through the embedder: invoice" in out.stdout
