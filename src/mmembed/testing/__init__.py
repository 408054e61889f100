"""An offline emulator of the registered providers' embedding APIs, for tests.

This is an EMULATOR: it serves the real APIs' paths, request formats, limits and error bodies over real HTTP,
but answers with deterministic FAKE vectors, NOT the real models' embeddings. Use it for tests, demos and
benchmarks — never to judge retrieval quality. Its fake space still behaves like a multimodal model: texts and
images share it with a modality gap, and a colour named in a text matches photos of that colour
(:func:`colour_photo`), so ranking code can be tested end to end without network access or keys.

    from mmembed.testing import Emulator, colour_photo

    with Emulator() as emu:          # http://127.0.0.1:<free port>
        ...                          # point a client's base_url at emu.url
        emu.requests                 # what the client sent
        emu.inject("503", times=2)   # and how it copes with failures

With pytest, the ``mmembed_emulator`` and ``mmembed_emulator_factory`` fixtures are registered automatically.
Standalone: ``python -m mmembed.testing --port 8765``. Each provider brings its endpoint(s) (``Provider.emulator``)
with the rows of the models it answers for; :data:`MODELS` is every registered row.
"""


from .emulator import Emulator, EmulatorStats, RecordedRequest
from .faults import FAULT_KINDS, Fault
from .models import ModelSpec
from .models import registered_models as _registered_models
from .samples import COLOURS, colour_photo
from .space import emulator_vector

#: The rows of every registered endpoint (what the emulator answers for), as of import.
MODELS: tuple[ModelSpec, ...] = _registered_models()

__all__ = [
    "COLOURS",
    "FAULT_KINDS",
    "MODELS",
    "Emulator",
    "EmulatorStats",
    "Fault",
    "ModelSpec",
    "RecordedRequest",
    "colour_photo",
    "emulator_vector",
]

