"""An mmembed provider plugin: Acme, a gateway that speaks Jina's embedding API under its own key.

The whole plugin is this class and one entry point (``pyproject.toml``: group ``mmembed.providers``, name
``acme``). Subclassing a built-in provider and setting ``name``, ``title`` and ``env_var`` is a complete
provider: its model families, wire format, limits and errors are the parent's. mmembed then derives everything
from the registry: ``Embedder("acme")``, ``mmembed.chroma.function_class("acme")`` (registered with Chroma as
``mmembed_acme``), ``mmembed.llama_index.embedding_class("acme")``, ``mmembed.langchain.embeddings_class("acme")``,
``mmembed ingest --provider acme`` and :mod:`mmembed.ray`.

A gateway of your own would also set ``default_base_url`` and ``official_hosts`` (the hosts a stored
collection config may send the key to); without them the parent's apply, and ``base_url=`` chooses the host.
"""

from __future__ import annotations

from mmembed.providers.jina import JinaProvider

__all__ = ["AcmeProvider"]


class AcmeProvider(JinaProvider):
    """Acme: Jina's models behind Acme's gateway (jina-clip-v2 by default)."""

    name = "acme"
    title = "Acme"
    env_var = "ACME_API_KEY"
