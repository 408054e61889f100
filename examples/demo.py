"""`make demo`: ingest the sample data into an embedded Chroma store and search it.

Uses the live API of the first registered provider whose key is set (NOMIC_API_KEY, JINA_API_KEY,
GOOGLE_API_KEY with GOOGLE_CLOUD_PROJECT, GEMINI_API_KEY, ...; MMEMBED_PROVIDER picks one explicitly). With no
key, it starts the offline emulator (fake, deterministic vectors) and says so, and embeds with gemini-embedding-2.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from make_sample_data import build

from mmembed.cli import main as mmembed
from mmembed.providers import PROVIDERS
from mmembed.testing import Emulator

HERE = Path(__file__).resolve().parent
KEYS = {name: cls.env_var for name, cls in PROVIDERS.items()}  # every registered provider, in registry order


def live_provider() -> str | None:
    wanted = os.environ.get("MMEMBED_PROVIDER")
    for provider, var in KEYS.items():
        if wanted and provider != wanted:
            continue
        if os.environ.get(var) and (provider != "vertex" or os.environ.get("GOOGLE_CLOUD_PROJECT")):
            return provider
    return None


def run(args: list[str]) -> int:
    print(f"\n$ mmembed {shlex.join(args)}", flush=True)
    return mmembed(args)


def main() -> int:
    data = HERE / "data"
    build(data)
    db = HERE / ".demo-db"
    shutil.rmtree(db, ignore_errors=True)
    provider = live_provider()
    emulator = None
    common = ["--collection", "demo", "--db", str(db)]
    if provider is None:
        provider = "gemini"  # Google's current model: photos, notes, the PDF, the clip and the sound alike
        emulator = Emulator().start()
        os.environ.setdefault(KEYS[provider], "emulator-key")  # the emulator takes any key
        common += ["--base-url", emulator.url]
        print(f"No provider key set: using the OFFLINE EMULATOR at {emulator.url} (fake vectors, not a real model).")
    else:
        print(f"Using the live {provider} API (key from {KEYS[provider]}).")
    try:
        status = run(["ingest", str(data), "--provider", provider, "-q", *common])
        if status != 0:
            return status
        for query in ("a red photo", "banana", "invoice"):
            if run(["search", query, "-n", "4", *common]) != 0:
                return 1
    finally:
        if emulator is not None:
            emulator.stop()
    print("\ndemo finished.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
