import struct
import zlib

import numpy as np
import pytest

from edgefleet.runtime.artifact import HEADER, LAYER, Artifact, load_artifact
from edgefleet.errors import ArtifactError
from edgefleet.toolchain.tflite_import import import_tflite


@pytest.fixture(scope="module")
def blob(trained) -> bytes:
    return trained.artifact.to_bytes()


def recrc(data: bytearray) -> bytes:
    struct.pack_into("<I", data, 12, zlib.crc32(bytes(data[16:])))
    return bytes(data)


def test_round_trip_is_byte_identical_and_aligned(blob):
    art = Artifact.from_bytes(blob)
    assert art.to_bytes() == blob
    assert len(blob) % 4 == 0
    hdr = HEADER.unpack_from(blob, 0)
    feat_off, layers_off, scoring_off = hdr[15], hdr[16], hdr[17]
    assert all(off % 4 == 0 for off in (feat_off, layers_off, scoring_off))
    for i in range(len(art.layers)):
        rec = LAYER.unpack_from(blob, layers_off + i * LAYER.size)
        assert all(off % 4 == 0 for off in rec[9:])


def test_default_model_fits_the_budget(blob, trained):
    art = trained.artifact
    assert len(blob) <= 16 * 1024
    assert art.arena_bytes <= 1024
    assert art.features is not None and art.scoring is not None


def test_every_truncation_is_refused(blob):
    for n in range(0, len(blob), 7):
        with pytest.raises(ArtifactError):
            Artifact.from_bytes(blob[:n])


def test_any_flipped_byte_is_refused(blob):
    rng = np.random.default_rng(0)
    for pos in rng.integers(0, len(blob), 300):
        bad = bytearray(blob)
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(ArtifactError):
            Artifact.from_bytes(bytes(bad))


def test_wrong_version_and_magic_say_so(blob):
    bad = bytearray(blob)
    struct.pack_into("<H", bad, 4, 2)
    with pytest.raises(ArtifactError, match="version 2 is not supported"):
        Artifact.from_bytes(recrc(bad))
    bad = bytearray(blob)
    bad[0:4] = b"TFL3"
    with pytest.raises(ArtifactError, match="not an edgefleet model artifact"):
        Artifact.from_bytes(bytes(bad))


def test_structural_lies_with_a_valid_crc_are_refused(blob):
    layers_off = HEADER.unpack_from(blob, 0)[16]
    cases = {
        "weights offset": (layers_off + 24, "<I", len(blob) + 64),
        "misaligned": (layers_off + 24, "<I", 66),
        "layer width": (layers_off + 2, "<H", 9999),
        "shift": (None, None, None),
        "reserved header": (62, "<H", 1),
        "reserved layer": (layers_off + 6, "<H", 1),
    }
    for name, (off, fmt, value) in cases.items():
        bad = bytearray(blob)
        if name == "shift":
            s_off = LAYER.unpack_from(blob, layers_off)[12]
            struct.pack_into("<i", bad, s_off, 40)
        else:
            struct.pack_into(fmt, bad, off, value)
        with pytest.raises(ArtifactError):
            Artifact.from_bytes(recrc(bad))


def test_accumulator_overflow_is_refused(tflite_models):
    art = import_tflite(tflite_models["ae32_pt"])
    art.layers[0].weights = np.full_like(art.layers[0].weights, 127)
    art.layers[0].bias = np.full(art.layers[0].n_out, 2**31 - 1, np.int32)
    with pytest.raises(ArtifactError, match="overflow"):
        Artifact.from_bytes(art.to_bytes())


def test_load_artifact_names_the_file(tmp_path):
    p = tmp_path / "x.efm"
    p.write_bytes(b"EFAM" + b"\0" * 10)
    with pytest.raises(ArtifactError, match="x.efm"):
        load_artifact(p)
    with pytest.raises(ArtifactError, match="cannot read"):
        load_artifact(tmp_path / "missing.efm")
