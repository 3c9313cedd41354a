"""`edgefleet ... | head`: the reader leaving early is not an error (no 'internal error', exit 0)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

from edgefleet.service import pki

REPO = Path(__file__).resolve().parents[2]


def test_a_reader_that_leaves_early_gets_no_error(tmp_path):
    d = tmp_path / "pki"
    pki.init(d, server_names=["localhost"])
    for i in range(150):  # ~11 KB of listing: more than the pipe below holds
        pki.issue(d, f"dev-{i:04d}")
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)  # a small pipe, so the writer is still writing when the reader leaves
    proc = subprocess.Popen([sys.executable, "-m", "edgefleet", "pki", "list", "--dir", str(d)], cwd=REPO,
                            stdout=w, stderr=subprocess.PIPE)
    os.close(w)
    reader = os.fdopen(r, "rb")
    first = reader.readline()
    reader.close()  # as `head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 0, err
    assert first.startswith(b"ca ") or b"dev-" in first
    assert "error" not in err and "Traceback" not in err, err
