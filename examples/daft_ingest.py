"""The same pipeline on Daft: a ``@daft.cls`` UDF around :class:`mmembed.ray.EmbedBatches`' logic.

    pip install daft "mmembed[ray]"     # Daft is NOT a dependency of mmembed; this example is not run in tests

Daft hands a UDF 1-3 rows at a time unless told otherwise: ``.into_batches(N)`` gives it N rows per call,
so a Nomic text request carries its 10 texts and a Jina request up to 2,048. The shared rate limit is the
same :class:`mmembed.ray.RateLimit` actor when Daft runs on Ray (``daft.set_runner_ray()``);
Daft's own OpenAI embedder instead answers a 429 by re-sending one request per row.
"""

from __future__ import annotations

import daft  # type: ignore[import-not-found]  # not installed here: this example is not run in tests
import pyarrow as pa

from mmembed.ray import EmbedBatches, RateLimit


@daft.cls(max_concurrency=4)
class Embed:
    """One Embedder per Daft worker; the key comes from the worker's environment (NOMIC_API_KEY)."""

    def __init__(self, limit: RateLimit | None = None) -> None:
        self.embed = EmbedBatches("nomic", text_column="text", image_column="image", rate_limit=limit)

    @daft.method.batch(return_dtype=daft.DataType.list(daft.DataType.float32()))
    def __call__(self, text: daft.Series, image: daft.Series) -> daft.Series:
        table = pa.table({"text": text.to_arrow(), "image": image.to_arrow()})
        out = self.embed(table)  # bad rows get a null vector (and an error, dropped here)
        return daft.Series.from_arrow(out.column("embedding").combine_chunks(), name="embedding")


def main() -> None:
    daft.set_runner_ray()  # so that every worker shares one RateLimit actor
    limit = RateLimit("nomic", requests_per_minute=600)
    embed = Embed(limit)
    df = daft.read_parquet("items/*.parquet")  # columns: id, text (or null), image (bytes, path or URL, or null)
    df = df.into_batches(256).with_column("embedding", embed(df["text"], df["image"]))
    df.where(df["embedding"].not_null()).write_lance("media.lance")  # or collect() and add to Chroma


if __name__ == "__main__":
    main()
