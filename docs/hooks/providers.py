"""mkdocs hook: the provider pages, generated from the registry's declarations so they stay true.

Every registered provider gets ``providers/<name>.md``: its kinds, models (dimensions, image side, per-request
cap), limits, auth, hosts and options, read from the provider and model-family classes. A hand-written page of
the same name keeps its text (quirks, examples) and gets the generated facts where it says
``<!-- mmembed:facts -->`` (or at its end). ``providers/index.md`` gets the provider x kind table.
"""

from __future__ import annotations

import re
from typing import Any

from mkdocs.structure.files import File, Files

MARKER = "<!-- mmembed:facts -->"
KINDS = ("text", "image", "pdf", "video", "audio", "interleaved")


def _providers() -> dict[str, Any]:
    from mmembed.providers import PROVIDERS

    return {name: PROVIDERS[name] for name in PROVIDERS}


def _kinds(cls: Any) -> set[str]:
    return {k for h in cls.hostings() for info in h.family.models.values() for k in (info.kinds or h.family.kinds)}


def _default_model(cls: Any) -> str:
    # A self-hosted server declares no default: the provider asks the server which model it serves.
    return f"`{cls.default_model}`" if getattr(cls, "default_model", None) else "the served one"


def kind_table(readme: bool = False) -> str:
    """Providers x kinds: ✓ native on some model, · through a fallback or not at all.

    The docs' table links each name to its page; the README's (``readme=True``: built-in providers only, a
    ``| `name` |`` cell and a link to the page at the end) is checked against this by ``tests/test_docs.py``.
    """
    from mmembed.providers import BUILTINS, PROVIDERS

    names = list(BUILTINS) if readme else list(_providers())
    head = "| provider | " + " | ".join(KINDS) + " | default model | key |" + (" docs |" if readme else "")
    rows = [head, "|---" * (len(KINDS) + 3 + readme) + "|"]
    for name in names:
        cls = PROVIDERS[name]
        kinds = _kinds(cls)
        marks = " | ".join("✓" if kind in kinds else "·" for kind in KINDS)
        key = f"`{cls.env_var}`" + ("" if cls.key_required else " (optional)")
        if readme:
            page = f"[{cls.title}](docs/providers/{name}.md)"
            rows.append(f"| `{name}` | {marks} | {_default_model(cls)} | {key} | {page} |")
        else:
            rows.append(f"| [`{name}`]({name}.md) | {marks} | {_default_model(cls)} | {key} |")
    return "\n".join(rows)


def facts(cls: Any) -> str:
    """The generated part of one provider's page."""
    lines = [f"## {cls.title} at a glance", "", (cls.__doc__ or "").strip().splitlines()[0], ""]
    lines += [
        "| | |", "|---|---|",
        f"| name | `{cls.name}` (Chroma: `mmembed_{cls.name}`) |",
        f"| key | `{cls.env_var}`" + "".join(f", `{v}`" for v in cls.fallback_env_vars)
        + ("" if cls.key_required else " — optional") + " |",
        f"| default host | `{cls.default_base_url}` |" if getattr(cls, "default_base_url", None)
        else "| default host | none: pass `base_url=` |",
        f"| official hosts | {', '.join(f'`{h}`' for h in cls.official_hosts) or '— (none: name the server)'} |",
        f"| requests in flight | {cls.default_concurrency} |",
        f"| rate limit | {_rate(cls)} |",
        f"| classes | `{cls.title}MultimodalEmbeddingFunction`, `{cls.title}MultiModalEmbedding`, "
        f"`{cls.title}MultimodalEmbeddings` |",
        "", "### Models", "",
    ]
    for hosting in cls.hostings():
        lines += [_family_line(cls, hosting), ""]
    lines += [
        "| model | dimensions | kinds | image side | inputs per request |", "|---|---|---|---|---|",
    ]
    for hosting in cls.hostings():
        family = hosting.family
        for info in family.models.values():
            kinds = ", ".join(k for k in KINDS if k in (info.kinds or family.kinds))
            default = " (default)" if info.name == getattr(cls, "default_model", None) else ""
            side = f"{info.image_side}" + (f", long side ≤ {info.max_side}" if info.max_side else "")
            lines.append(
                f"| `{info.name}`{default} | {_dimensions(info)} | {kinds} | {side} | {info.max_batch or '—'} |"
            )
    lines += ["", "Other model names pass through with the family's defaults.", ""]
    lines += _options(cls)
    return "\n".join(lines) + "\n"


def _family_line(cls: Any, hosting: Any) -> str:
    family = hosting.family
    what = ((family.__doc__ or "").strip().splitlines() or [family.__name__])[0].rstrip(".")
    facts = [f"uploads {', '.join(sorted(family.image_formats))}"]
    if family.server_fetches_urls:
        facts.append("the API fetches http(s) image URLs itself")
    if hosting.wire.get("gcs", family.accepts_gcs):
        facts.append("reads `gs://`")
    if hosting.concurrency or hosting.requests_per_minute:
        facts.append(
            f"here {hosting.concurrency or cls.default_concurrency} in flight, "
            f"{hosting.requests_per_minute or cls.default_requests_per_minute or 'no'} requests/min"
        )
    return f"**`{family.__name__}`**: {what} ({'; '.join(facts)})"


def _dimensions(info: Any) -> str:
    native = str(info.dimensions or "?")
    if info.dimension_choices:
        return f"{native} (or {', '.join(map(str, info.dimension_choices))})"
    if info.api_dimensions:
        low, high = info.api_dimensions
        return f"{native} ({low}-{high})"
    return native + (" (Matryoshka)" if info.matryoshka and info.dimensions else "")


def _options(cls: Any) -> list[str]:
    """The provider's and its families' own options in a table; the common ones by name."""
    from mmembed.options import options_for

    own = {spec.name for spec in cls.own_option_specs()} if hasattr(cls, "own_option_specs") else set()
    specs = options_for(cls)
    lines = ["### Options", ""]
    mine = [spec for spec in specs if spec.name in own]
    if mine:
        lines += [f"{cls.title}'s own:", "", "| option | default | what it does |", "|---|---|---|"]
        for spec in mine:
            default = "—" if spec.default is None else f"`{spec.default!r}`"
            text = spec.doc.replace("|", "\\|")
            lines.append(f"| `{spec.name}` | {default} | {text} |")
        lines.append("")
    common = ", ".join(f"`{spec.name}`" for spec in specs if spec.name not in own)
    lines.append(f"And the options every provider takes: {common} "
                 "(see [`Embedder`](../reference.md#mmembed.Embedder)).")
    return lines


def _rate(cls: Any) -> str:
    rpm = cls.default_requests_per_minute
    if rpm is None:
        return "none by default (set `requests_per_minute=`)"
    return f"{rpm:g} requests/min, counted over {cls.rate_window:g} s"


def on_config(config: Any) -> Any:
    """Every registered provider's page goes in the Providers section of the nav, after the overview."""
    for entry in config["nav"] or []:
        if isinstance(entry, dict) and "Providers" in entry:
            section = entry["Providers"]
            listed = {item if isinstance(item, str) else next(iter(item.values())) for item in section}
            pages = [{cls.title: f"providers/{name}.md"} for name, cls in _providers().items()
                     if f"providers/{name}.md" not in listed]
            section[1:1] = pages
    return config


def on_files(files: Files, config: Any) -> Files:
    for name in _providers():
        path = f"providers/{name}.md"
        if files.get_file_from_path(path) is None:
            content = f"# {_providers()[name].title}\n\n{MARKER}\n"
            files.append(File.generated(config, path, content=content))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    path = page.file.src_uri
    if path == "providers/index.md":
        return markdown.replace("<!-- mmembed:kinds -->", kind_table())
    if path.startswith("providers/") and path.count("/") == 1:
        name = path.removeprefix("providers/").removesuffix(".md")
        providers = _providers()
        if name in providers:
            generated = facts(providers[name])
            return markdown.replace(MARKER, generated) if MARKER in markdown else markdown + "\n" + generated
    return markdown


# Docstrings use Sphinx's inline roles (:class:`~mmembed.Segment`), which mkdocstrings shows as written; show
# them as code, with the module path dropped where the role's ``~`` asks for it.
_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj|const):<code>(~?)([^<]*)</code>")


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    return _ROLE.sub(_role, html)
