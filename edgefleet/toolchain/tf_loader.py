"""TensorFlow, imported without its native start-up chatter.

TensorFlow's C++ side writes "All log messages before absl::InitializeLog()..." and the oneDNN notice
straight to file descriptor 2 while it loads, whatever TF_CPP_MIN_LOG_LEVEL says, so `edgefleet
model train` printed lines a user can do nothing about. The import runs with fd 2 held in a temporary
file; what was written there is replayed when the import fails, or at debug level (`-v`)."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from types import ModuleType

log = logging.getLogger(__name__)


def import_tensorflow() -> ModuleType:
    """`import tensorflow`, its native start-up lines kept out of the terminal unless -v or an error."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    if log.isEnabledFor(logging.DEBUG):
        import tensorflow as tf

        return tf
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            import tensorflow as tf
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        held.seek(0)
        log.debug("TensorFlow start-up: %s", held.read().decode(errors="replace").strip())
    return tf
