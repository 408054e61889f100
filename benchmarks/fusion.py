"""nDCG@10 of a plain query, reciprocal rank fusion and calibrated fusion over one labelled mixed collection.

    .venv/bin/python benchmarks/fusion.py [MODEL ...]

One collection per model, embedded on the offline emulator (its fake vectors, with the modality gap of real
models): 40 notes, 24 photos, 12 PDF pages (4 PDFs), 8 video clips and 5 sounds, each made from known concepts —
a colour and a noun for a note, a noun for a PDF page, a colour for a photo or a clip, nothing the emulator can
hear for a sound. A record's graded relevance to a query is the number of the query's concepts it carries (0, 1
or 2), fixed by construction, never by a similarity. Of the 12 queries, 4 name a colour (no PDF page or sound is
relevant), 3 a colour and a noun, 5 only a noun (no photo, clip or sound is relevant). gemini-embedding-2 takes
every kind natively; jina-clip-v2 (a CLIP-style gap) takes texts and images only, so its PDF pages are stored as
page images plus text passages (a page image counts as relevant, though the emulator cannot read it) and it has
no clips or sounds.

Prints one Markdown table: per query, the three nDCG@10 values for each model. ``benchmarks/run.py --only fusion``
puts the same table, and the target, in RESULTS.md.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chromadb

from mmembed.chroma import add_mixed, function_class, query_mixed
from mmembed.errors import UnsupportedKindError
from mmembed.testing import COLOURS, Emulator, colour_photo
from mmembed.testing.media import make_audio, make_pdf, make_video

NOUNS = ("truck", "boat", "garden", "kitchen", "invoice", "contract", "harbour", "market")
NOTE_COLOURS = ("red", "orange", "green", "blue", "purple", "pink", "brown", "cyan")
QUERIES: tuple[tuple[str, frozenset[str]], ...] = (
    ("red", frozenset({"red"})),
    ("something green", frozenset({"green"})),
    ("blue", frozenset({"blue"})),
    ("purple", frozenset({"purple"})),
    ("a red truck", frozenset({"red", "truck"})),
    ("a blue boat", frozenset({"blue", "boat"})),
    ("green garden", frozenset({"green", "garden"})),
    ("invoice", frozenset({"invoice"})),  # only notes and PDF pages hold anything relevant
    ("contract", frozenset({"contract"})),
    ("harbour", frozenset({"harbour"})),
    ("market", frozenset({"market"})),
    ("kitchen", frozenset({"kitchen"})),
)
# The demo's model, which embeds every kind natively with a small modality gap, and a CLIP-style one with a large
# gap that takes texts and images only (PDF pages as page images plus text passages; no clips, no sounds).
MODELS: dict[str, tuple[str, dict[str, str]]] = {
    "gemini-embedding-2": ("gemini", {}),
    "jina-clip-v2": ("jina", {}),
}


@dataclass(frozen=True)
class Record:
    id: str
    item: object
    concepts: frozenset[str]


def collection_items(folder: Path) -> list[Record]:
    """40 notes, 24 photos, 12 PDF pages (4 PDFs), 8 clips, 5 sounds: each with the concepts it was made from."""
    records = []
    for i in range(40):
        colour, noun = NOTE_COLOURS[i % 8], NOUNS[(i * 3 + i // 8) % 8]
        text = f"Field note {i}: the {colour} {noun} we passed this morning, described for the archive."
        records.append(Record(f"note-{i}", text, frozenset({colour, noun})))
    colours = list(COLOURS)
    for i in range(24):
        path = folder / f"photo-{i}.png"
        colour_photo(colours[i % len(colours)], (256, 192), seed=i).save(path)
        records.append(Record(f"photo-{i}", path, frozenset({colours[i % len(colours)]})))
    for d, nouns in enumerate((("invoice", "contract", "market"), ("harbour", "truck", "invoice"),
                               ("kitchen", "garden", "contract"), ("boat", "market", "harbour"))):
        pages = [f"{noun.title()} summary, section {p + 1}: figures for the {noun}." for p, noun in enumerate(nouns)]
        path = folder / f"report-{d}.pdf"
        path.write_bytes(make_pdf(pages))
        records += [Record(f"report-{d}#{p + 1}", path, frozenset({noun})) for p, noun in enumerate(nouns)]
    for i in range(8):
        colour = colours[(i * 5) % len(colours)]
        path = folder / f"clip-{i}.mp4"
        path.write_bytes(make_video(4.0, colour=COLOURS[colour]))
        records.append(Record(f"clip-{i}", path, frozenset({colour})))
    for i in range(5):
        path = folder / f"sound-{i}.wav"
        path.write_bytes(make_audio(1.0, frequency=220.0 * (i + 1)))
        records.append(Record(f"sound-{i}", path, frozenset()))
    return records


def ndcg_at_10(ranked: list[str], grades: dict[str, int]) -> float:
    """Normalised discounted cumulative gain of the first 10 ids, gains 2^grade - 1."""
    def dcg(gains: list[int]) -> float:
        return sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(gains[:10]))

    ideal = dcg(sorted(grades.values(), reverse=True))
    return dcg([grades.get(id_, 0) for id_ in ranked]) / ideal if ideal else 0.0


def stored(records: list[Record], embedder: Any) -> tuple[list[str], list[object], list[Record]]:
    """Ids, items and labels as stored: files expanded by the model (a PDF page may give an image and passages).

    Kinds the model cannot embed are left out (a text+image model takes no clips or sounds).
    """
    ids: list[str] = []
    items: list[object] = []
    labels: list[Record] = []
    pages = {r.id: r for r in records if "#" in r.id}
    for r in records:
        if "#" in r.id and not r.id.endswith("#1"):
            continue  # a PDF's first record expands the whole file
        try:
            segments = embedder.expand([r.item]) if isinstance(r.item, Path) else [r.item]
        except UnsupportedKindError:
            continue
        for k, segment in enumerate(segments):
            page = getattr(segment, "metadata", {}).get("page")
            label = pages[f"{r.id.split('#')[0]}#{page}"] if page is not None else r
            ids.append(f"{label.id}/{k}" if page is not None else r.id)
            items.append(segment)
            labels.append(Record(ids[-1], label.item, label.concepts))
    return ids, items, labels


def run_model(model: str, emulator: Emulator, folder: Path) -> dict[str, list[float]]:
    provider, extra = MODELS[model]
    function = function_class(provider)(model=model, base_url=emulator.url, api_key="emulator", **extra)
    collection = chromadb.EphemeralClient().create_collection(f"fusion-{provider}", embedding_function=function)
    ids, items, records = stored(collection_items(folder), function.embedder)
    add_mixed(collection, ids, items)
    vectors = function.embed_query([q for q, _ in QUERIES])
    scores: dict[str, list[float]] = {"plain query": [], "RRF": [], "calibrated": []}
    for (query, concepts), vector in zip(QUERIES, vectors, strict=True):
        grades = {r.id: min(len(r.concepts & concepts), 2) for r in records if r.concepts & concepts}
        plain = collection.query(query_embeddings=[vector], n_results=10)["ids"][0]
        scores["plain query"].append(ndcg_at_10(plain, grades))
        for name, fusion in (("RRF", "rrf"), ("calibrated", "calibrated")):
            hits = query_mixed(collection, query_texts=[query], n_results=10, fusion=fusion)  # type: ignore[arg-type]
            scores[name].append(ndcg_at_10(hits["ids"][0], grades))
    return scores


def run(models: list[str]) -> dict[str, dict[str, list[float]]]:
    """Per model, per method, the nDCG@10 of each query (in the order of QUERIES)."""
    results = {}
    with Emulator() as emulator, tempfile.TemporaryDirectory() as tmp:
        for model in models:
            started = time.perf_counter()
            results[model] = run_model(model, emulator, Path(tmp))
            print(f"{model}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return results


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def markdown(results: dict[str, dict[str, list[float]]]) -> str:
    """One table: a row per query, nDCG@10 of each method for each model; the means last."""
    methods = list(next(iter(results.values())))
    head = [f"{model}: {method}" for model in results for method in methods]
    lines = ["| query | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for q, (query, _) in enumerate(QUERIES):
        cells = [f"{scores[m][q]:.3f}" for scores in results.values() for m in methods]
        lines.append(f"| {query} | " + " | ".join(cells) + " |")
    cells = [f"**{mean(scores[m]):.3f}**" for scores in results.values() for m in methods]
    lines.append("| **mean nDCG@10** | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(models: list[str]) -> int:
    print(markdown(run(models)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or list(MODELS)))
