"""The one Bytewax release this layer is written and tested for.

Only Bytewax's public API is used (`bytewax.inputs`, `bytewax.outputs`, `bytewax.operators`,
`bytewax.dataflow`, `bytewax.run.cli_main`); no private module, no recovery store (the state
lives in Kafka, `syi_shared.checkpoint`). `tests/dataflow/test_compat.py` fails when the installed
version differs, so an upgrade is a decision, not an accident.
"""

from __future__ import annotations

from importlib.metadata import version

BYTEWAX_VERSION = "0.21.1"


def check_bytewax() -> None:
    found = version("bytewax")
    if found != BYTEWAX_VERSION:
        raise RuntimeError(f"bytewax {found} is installed; syi_dataflow is written for {BYTEWAX_VERSION} (see compat.py)")
