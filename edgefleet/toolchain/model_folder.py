"""A model folder: everything `edgefleet model train` writes, and how to read it back.

    model.efm            the artifact nodes run (docs/artifact-format.md)
    manifest.json        signed manifest (Ed25519)
    model_int8.tflite    the int8 TFLite model the artifact was imported from
    model_float.tflite   the float model, for float-vs-int8 evaluation
    card.json, card.md   the model card
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgefleet.runtime.artifact import Artifact
from edgefleet.errors import ArtifactError

ARTIFACT, MANIFEST, INT8, FLOAT, CARD_JSON, CARD_MD = (
    "model.efm", "manifest.json", "model_int8.tflite", "model_float.tflite", "card.json", "card.md")


@dataclass
class ModelFolder:
    path: Path

    def _read(self, name: str, *, required: bool = True) -> bytes | None:
        p = self.path / name
        if not p.exists():
            if required:
                raise ArtifactError(f"{self.path} is not a model folder: {name} is missing "
                                    "(make one with `edgefleet model train`)")
            return None
        return p.read_bytes()

    def artifact_bytes(self) -> bytes:
        return self._read(ARTIFACT)

    def artifact(self) -> Artifact:
        try:
            return Artifact.from_bytes(self.artifact_bytes())
        except ArtifactError as exc:
            raise ArtifactError(f"{self.path / ARTIFACT}: {exc}") from exc

    def manifest(self) -> bytes:
        return self._read(MANIFEST)

    def tflite_int8(self) -> bytes:
        return self._read(INT8)

    def tflite_float(self) -> bytes | None:
        return self._read(FLOAT, required=False)

    def card(self) -> dict:
        raw = self._read(CARD_JSON, required=False)
        try:
            card = json.loads(raw) if raw else {}
        except ValueError as exc:
            raise ArtifactError(f"{self.path / CARD_JSON} is not valid JSON ({exc}); write it again with "
                                "`edgefleet model card` or remove it") from exc
        if not isinstance(card, dict):
            raise ArtifactError(f"{self.path / CARD_JSON} must hold a JSON object")
        return card

    def write(self, name: str, data: bytes | str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / (name + ".tmp")
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        tmp.replace(self.path / name)  # readers never see half a file
