"""Late interaction in Chroma: mmembed's add_late/query_late against chroma#4600's one-record-per-patch workaround.

    .venv/bin/python benchmarks/late.py              # 3,000 documents (about 7 minutes on 2 cores)
    .venv/bin/python benchmarks/late.py --documents 500 --queries 10   # a quick look

A synthetic multi-vector corpus (:func:`mmembed.testing.multivectors.synthetic_corpus`: 128-d unit rows, tens to
a hundred-odd per document; queries made from a target document, so relevant documents share concepts) goes
into two local persistent Chroma stores:

* **mmembed**: ``create_late_collection`` + ``add_late`` (one record per document: its MUVERA encoding; its
  multi-vector in the sibling collection), queried with ``query_late`` (candidates by the encoding, exact MaxSim);
* **per-patch** (what Chroma's maintainers suggest in chroma#4600): one record per patch with its document's id
  in the metadata; a query asks for the nearest ``k`` patches of each of its tokens, takes their documents as
  candidates, fetches all of those documents' patches and scores MaxSim on the client.

Ground truth is brute-force exact MaxSim over the whole corpus. Reported: recall@10, the largest difference
between returned and exact scores, latency per query (one query at a time), ingest time, and bytes on disk per
document (the store's directory after the adds). The figures go to benchmarks/RESULTS.md between markers.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chromadb
import numpy as np

from mmembed.chroma import add_late, create_late_collection, query_late
from mmembed.late import MultiVectorIndex, MuveraSettings, encode_documents, encode_queries
from mmembed.testing.multivectors import SyntheticCorpus, synthetic_corpus

HERE = Path(__file__).resolve().parent
BEGIN, END = "<!-- late:begin -->", "<!-- late:end -->"
PATCH_GET_DOCS = 100  # candidate documents per get: their patch ids stay under SQLite's 32,766 variables


@dataclass
class Row:
    name: str
    recall: float
    score_error: float | None
    latencies: list[float]
    ingest_s: float
    bytes_per_doc: float
    notes: str = ""

    def markdown(self) -> str:
        median = statistics.median(self.latencies) * 1000
        p95 = sorted(self.latencies)[int(0.95 * (len(self.latencies) - 1))] * 1000
        error = "-" if self.score_error is None else f"{self.score_error:.1e}"
        return (f"| {self.name} | {self.recall:.3f} | {error} | {median:.1f} | {p95:.1f} | {self.ingest_s:.1f} | "
                f"{self.bytes_per_doc / 1024:.1f} | {self.notes} |")


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def recall(found: list[str], truth: set[str]) -> float:
    return len(set(found) & truth) / len(truth)


def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def run_late(corpus: SyntheticCorpus, truth: list[set[str]], exact: list[dict[str, float]], work: Path,
             over_fetches: list[int]) -> list[Row]:
    client = chromadb.PersistentClient(str(work / "late"))
    collection = create_late_collection(client, "pages", MuveraSettings())
    ids = [f"d{i}" for i in range(len(corpus.documents))]

    def ingest() -> None:
        for start in range(0, len(ids), 500):
            add_late(collection, ids[start:start + 500], multivectors=corpus.documents[start:start + 500])

    _, ingest_s = timed(ingest)
    size = directory_bytes(work / "late") / len(ids)
    rows = []
    for over_fetch in over_fetches:
        latencies, recalls, errors = [], [], []
        for q, query in enumerate(corpus.queries):
            result, seconds = timed(lambda query=query, f=over_fetch: query_late(
                collection, query_multivectors=[query], n_results=10, over_fetch=f))
            latencies.append(seconds)
            recalls.append(recall(result["ids"][0], truth[q]))
            errors += [abs(s - exact[q][i]) for i, s in zip(result["ids"][0], result["maxsim_scores"][0], strict=True)]
        rows.append(Row(f"mmembed `query_late`, over_fetch={over_fetch} ({10 * over_fetch} candidates)",
                        float(np.mean(recalls)), max(errors), latencies, ingest_s, size,
                        f"{MuveraSettings().fde_dim(128)}-float encodings"))
    return rows


def run_per_patch(corpus: SyntheticCorpus, truth: list[set[str]], work: Path, per_token: list[int]) -> list[Row]:
    client = chromadb.PersistentClient(str(work / "patch"))
    collection = client.create_collection("patches", embedding_function=None, metadata={"hnsw:space": "ip"})
    limit = client.get_max_batch_size()

    def ingest() -> None:
        batch_ids: list[str] = []
        batch_rows: list[np.ndarray] = []
        batch_meta: list[dict[str, Any]] = []
        for d, doc in enumerate(corpus.documents):
            for r, row in enumerate(doc):
                batch_ids.append(f"d{d}:{r}")
                batch_rows.append(row)
                batch_meta.append({"doc": f"d{d}"})
                if len(batch_ids) == limit:
                    collection.add(ids=batch_ids, embeddings=np.stack(batch_rows), metadatas=batch_meta)  # type: ignore[arg-type]
                    batch_ids, batch_rows, batch_meta = [], [], []
        if batch_ids:
            collection.add(ids=batch_ids, embeddings=np.stack(batch_rows), metadatas=batch_meta)  # type: ignore[arg-type]

    _, ingest_s = timed(ingest)
    size = directory_bytes(work / "patch") / len(corpus.documents)
    rows = []
    for k in per_token:
        latencies, recalls = [], []
        for q, query in enumerate(corpus.queries):
            top, seconds = timed(lambda query=query, k=k: per_patch_query(collection, query, k))
            latencies.append(seconds)
            recalls.append(recall(top, truth[q]))
        rows.append(Row(f"per-patch records (chroma#4600), {k} patches per query token", float(np.mean(recalls)),
                        None, latencies, ingest_s, size, "MaxSim on the client over every patch of the candidates"))
    return rows


def per_patch_query(collection: Any, query: np.ndarray, k: int) -> list[str]:
    """chroma#4600's recipe: nearest patches per token → candidate documents → all their patches → MaxSim."""
    near = collection.query(query_embeddings=query, n_results=k, include=["metadatas"])
    candidates = sorted({m["doc"] for hits in near["metadatas"] for m in hits})
    by_doc: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(candidates), PATCH_GET_DOCS):  # SQLite caps the variables of one statement
        patches = collection.get(where={"doc": {"$in": candidates[start:start + PATCH_GET_DOCS]}},
                                 include=["embeddings", "metadatas"])
        for meta, row in zip(patches["metadatas"], patches["embeddings"], strict=True):
            by_doc.setdefault(meta["doc"], []).append(row)
    names = list(by_doc)
    scores = MultiVectorIndex([np.stack(by_doc[n]) for n in names]).scores(query)
    return [names[i] for i in np.argsort(-scores, kind="stable")[:10]]


def sweep(corpus: SyntheticCorpus, truth: list[set[str]]) -> list[str]:
    """Recall@10 of the encodings alone (numpy, no Chroma) for a few settings: size against over-fetch."""
    index = MultiVectorIndex(corpus.documents)
    exact = [index.scores(q) for q in corpus.queries]
    counts = (200, 400, 800, 1200)
    lines = [f"| settings | floats per record | recall@10, {counts[0]} candidates | "
             + " | ".join(map(str, counts[1:])) + " |", "|---|---|---|---|---|---|"]
    for settings in (MuveraSettings(), MuveraSettings(k_sim=3, d_proj=32, repetitions=20),
                     MuveraSettings(d_final=2048), MuveraSettings(k_sim=4, d_proj=16, repetitions=40),
                     MuveraSettings(k_sim=4, d_proj=32, repetitions=40)):
        scores = encode_queries(corpus.queries, settings) @ encode_documents(corpus.documents, settings).T
        cells = []
        for candidates in counts:
            found = []
            for q in range(len(corpus.queries)):
                shortlist = np.argsort(-scores[q], kind="stable")[:candidates]
                top = shortlist[np.argsort(-exact[q][shortlist], kind="stable")[:10]]
                found.append(recall([f"d{i}" for i in top], truth[q]))
            cells.append(f"{np.mean(found):.3f}")
        label = f"k_sim={settings.k_sim}, d_proj={settings.d_proj}, repetitions={settings.repetitions}"
        label += f", d_final={settings.d_final}" if settings.d_final else ""
        lines.append(f"| {label} | {settings.fde_dim(128)} | {' | '.join(cells)} |")
    return lines


def render(corpus: SyntheticCorpus, rows: list[Row], sweep_lines: list[str], args: argparse.Namespace,
           seconds: float) -> str:
    patches = sum(len(d) for d in corpus.documents)
    lines = [
        BEGIN,
        "## Late interaction: `query_late` against one record per patch (benchmarks/late.py)",
        "",
        f"`.venv/bin/python benchmarks/late.py --documents {args.documents} --queries {args.queries} --over-fetch "
        f"{' '.join(map(str, args.over_fetch))}` on "
        f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}; {seconds / 60:.1f} min in all, on 2 shared cores "
        "(compare within the table, not across runs). Corpus: "
        f"{len(corpus.documents):,} documents, {patches:,} 128-d rows ({patches / len(corpus.documents):.0f} per "
        f"document), {len(corpus.queries)} queries of 8-32 rows (`synthetic_corpus`, noise {args.noise}). "
        "Recall@10 is against brute-force exact MaxSim; *score error* is the largest |returned - exact| MaxSim; "
        "latency is per query, one at a time, in ms; bytes are the store's directory on disk after the adds.",
        "",
        "| contender | recall@10 | score error | median ms | p95 ms | ingest s | KB per document | notes |",
        "|---|---|---|---|---|---|---|---|",
        *[row.markdown() for row in rows],
        "",
    ]
    if sweep_lines:
        lines += ["Encodings alone (numpy): recall@10 after exact re-ranking of the top candidates by encoding.", "",
                  *sweep_lines, ""]
    lines.append(END)
    return "\n".join(lines)


def write(section: str, path: Path) -> None:
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=3000)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--noise", type=float, default=0.7)
    parser.add_argument("--over-fetch", type=int, nargs="+", default=[40, 80, 120, 160])
    parser.add_argument("--per-token", type=int, nargs="+", default=[10, 30, 60, 120])
    parser.add_argument("--sweep", action="store_true", help="also compare encoding settings (numpy only)")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    corpus = synthetic_corpus(documents=args.documents, queries=args.queries, rows=(20, 150), noise=args.noise)
    index = MultiVectorIndex(corpus.documents)
    scores = [index.scores(q) for q in corpus.queries]
    truth = [{f"d{i}" for i in np.lexsort((np.arange(len(s)), -s))[:10]} for s in scores]
    exact = [{f"d{i}": float(v) for i, v in enumerate(s)} for s in scores]
    work = Path(tempfile.mkdtemp(prefix="mmembed-late-"))
    try:
        rows = run_late(corpus, truth, exact, work, args.over_fetch)
        print(*(r.markdown() for r in rows), sep="\n", flush=True)
        rows += run_per_patch(corpus, truth, work, args.per_token)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    section = render(corpus, rows, sweep(corpus, truth) if args.sweep else [], args, time.perf_counter() - started)
    write(section, args.output)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
