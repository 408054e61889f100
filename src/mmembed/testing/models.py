"""The models the emulator answers for: one declarative row per model, limits included.

Each row says which vector space a model embeds into (models that share a space can be compared, like
``nomic-embed-text-v1.5`` and ``nomic-embed-vision-v1.5``), its full dimension, which modalities it takes, which
``task`` values it accepts and which of them mark a query, which output sizes can be requested and how many
inputs one request may carry. The endpoints derive their validation from these rows.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MODELS", "ModelSpec", "find_model"]

PROVIDERS = ("nomic", "jina", "vertex", "gemini", "voyage", "cohere")


@dataclass(frozen=True)
class ModelSpec:
    """What one emulated model accepts and returns."""

    provider: str
    name: str
    space: str
    dim: int
    modalities: frozenset[str]
    tasks: frozenset[str] = frozenset()
    query_tasks: frozenset[str] = frozenset()
    # Sizes a request may ask for (None: the request may not ask); vectors are Matryoshka-truncated.
    dimensions: tuple[int, ...] | range | None = None
    max_inputs: int = 1
    aliases: tuple[str, ...] = ()
    # How far apart texts and images sit: CLIP-style models have a large gap, natively multimodal ones less.
    modality_weight: float = 2.0
    embed_content: bool = False  # Google's Content wire (:embedContent / :batchEmbedContents), not :predict
    prompt_tasks: bool = False  # tasks arrive as prompt prefixes ("task: … | query: …"), not as a field
    default_dim: int | None = None  # what a request that names no size gets (None: dim)
    multivector_dim: int | None = None  # width of each row of a multi-vector answer (None: the model has none)

    def is_query(self, task: str | None) -> bool:
        """Whether ``task`` marks a search query (the emulator then nudges text vectors toward a query axis)."""
        return task is not None and task in self.query_tasks


_TEXT = frozenset({"text"})
_IMAGE = frozenset({"image"})
_BOTH = frozenset({"text", "image"})
_NOMIC_TASKS = frozenset({"search_document", "search_query", "classification", "clustering"})
_GEMINI_TASK_TYPES = frozenset(
    {"TASK_TYPE_UNSPECIFIED", "RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY", "CLASSIFICATION",
     "CLUSTERING", "QUESTION_ANSWERING", "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY"}
)
_GEMINI_QUERY_TYPES = frozenset({"RETRIEVAL_QUERY", "QUESTION_ANSWERING", "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY"})
_GEMINI_DIMS = range(128, 3073)
_VOYAGE_TASKS = frozenset({"query", "document"})  # input_type; Cohere's input types are Nomic's task types
_JINA_V4_TASKS = frozenset(
    {"retrieval.query", "retrieval.passage", "text-matching", "code.query", "code.passage"}
)

MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("nomic", "nomic-embed-text-v1.5", "nomic-v1.5", 768, _TEXT, _NOMIC_TASKS,
              frozenset({"search_query"}), range(64, 769), max_inputs=10),
    ModelSpec("nomic", "nomic-embed-text-v1", "nomic-v1", 768, _TEXT, _NOMIC_TASKS,
              frozenset({"search_query"}), None, max_inputs=10),
    ModelSpec("nomic", "nomic-embed-vision-v1.5", "nomic-v1.5", 768, _IMAGE, max_inputs=512),
    ModelSpec("nomic", "nomic-embed-vision-v1", "nomic-v1", 768, _IMAGE, max_inputs=512),
    ModelSpec("jina", "jina-clip-v2", "jina-clip-v2", 1024, _BOTH, frozenset({"retrieval.query"}),
              frozenset({"retrieval.query"}), range(1, 1025), max_inputs=2048),
    ModelSpec("jina", "jina-clip-v1", "jina-clip-v1", 768, _BOTH, max_inputs=2048),
    ModelSpec("jina", "jina-embeddings-v4", "jina-embeddings-v4", 2048, _BOTH, _JINA_V4_TASKS,
              frozenset({"retrieval.query", "code.query"}), range(1, 2049), max_inputs=512, multivector_dim=128),
    # A text-only model, as in the 2023 recordings; handy for checking that clients refuse images for it.
    ModelSpec("jina", "jina-embeddings-v2-base-en", "jina-embeddings-v2-base-en", 768, _TEXT,
              max_inputs=2048),
    ModelSpec("vertex", "multimodalembedding@001", "vertex-multimodal", 1408, _BOTH,
              dimensions=(128, 256, 512, 1408), max_inputs=1, aliases=("multimodalembedding",)),
    # gemini-embedding-2 on both backends: one space (the same model), a small modality gap, prompt-prefix tasks.
    # The Gemini API batches up to 100 requests per call; Vertex takes one content per call.
    ModelSpec("gemini", "gemini-embedding-2", "gemini-embedding-2", 3072, _BOTH, dimensions=_GEMINI_DIMS,
              max_inputs=100, modality_weight=0.6, embed_content=True, prompt_tasks=True),
    ModelSpec("gemini", "gemini-embedding-2-preview", "gemini-embedding-2-preview", 3072, _BOTH,
              dimensions=_GEMINI_DIMS, max_inputs=100, modality_weight=0.6, embed_content=True, prompt_tasks=True),
    ModelSpec("gemini", "gemini-embedding-001", "gemini-embedding-001", 3072, _TEXT, _GEMINI_TASK_TYPES,
              _GEMINI_QUERY_TYPES, _GEMINI_DIMS, max_inputs=100, embed_content=True),
    ModelSpec("vertex", "gemini-embedding-2", "gemini-embedding-2", 3072, _BOTH, dimensions=_GEMINI_DIMS,
              max_inputs=1, modality_weight=0.6, embed_content=True, prompt_tasks=True),
    ModelSpec("vertex", "gemini-embedding-2-preview", "gemini-embedding-2-preview", 3072, _BOTH,
              dimensions=_GEMINI_DIMS, max_inputs=1, modality_weight=0.6, embed_content=True, prompt_tasks=True),
    ModelSpec("voyage", "voyage-multimodal-3.5", "voyage-multimodal-3.5", 2048, _BOTH, _VOYAGE_TASKS,
              frozenset({"query"}), dimensions=(256, 512, 1024, 2048), max_inputs=1000, modality_weight=1.0,
              default_dim=1024),
    ModelSpec("voyage", "voyage-multimodal-3", "voyage-multimodal-3", 1024, _BOTH, _VOYAGE_TASKS,
              frozenset({"query"}), dimensions=(1024,),
              max_inputs=1000, modality_weight=1.0),
    ModelSpec("cohere", "embed-v4.0", "cohere-embed-v4", 1536, _BOTH, _NOMIC_TASKS,
              frozenset({"search_query"}), dimensions=(256, 512, 1024, 1536),
              max_inputs=96, modality_weight=1.0),
)

JINA_DEFAULT_MODEL = "jina-clip-v2"


def find_model(provider: str, name: str) -> ModelSpec | None:
    """The row for ``name`` (or one of its aliases) at ``provider``, or None when the emulator does not know it."""
    for spec in MODELS:
        if spec.provider == provider and (name == spec.name or name in spec.aliases):
            return spec
    return None
