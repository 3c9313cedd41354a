#!/usr/bin/env python3
"""Size report of a linked Cortex-M image: flash/RAM totals and the share per module.

Reads the GNU ld map (input sections per object) and `arm-none-eabi-size`; writes a
table (stdout and SIZE.txt next to the JSON) and the same figures as JSON. Only the
standard library: it runs from the firmware Makefile.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

OUT_FLASH = {".isr_vector", ".text", ".model", ".ARM.exidx", ".data"}  # .data is stored in flash too
ONE_LINE = re.compile(r"^ (\.\S+|COMMON)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")
NAME_ONLY = re.compile(r"^ (\.\S+|COMMON)$")
CONT = re.compile(r"^\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")
OUT_SEC = re.compile(r"^(\.\S+)\s+0x[0-9a-f]+\s+0x([0-9a-f]+)")
OUT_SEC_NAME = re.compile(r"^(\.\S+)\s*$")

APP = Path(__file__).resolve().parents[1] / "app"
CMSIS_TABLES = ("arm_common_tables.o", "arm_const_structs.o")
CRYPTO_LIBS = {"monocypher.o": "monocypher_ed25519", "hash_sha256_cp.o": "libsodium_sha256",
               "hash_sha512_cp.o": "libsodium_sha512"}  # third-party, fetched from PyPI sdists


def module_of(obj: str) -> str:
    """Group an input object into the module it belongs to."""
    m = re.search(r"\(([^)]+)\)$", obj)
    name = m.group(1) if m else Path(obj).name
    if "libm" in obj:
        return "libm"
    if "libc" in obj or "libgcc" in obj or "libnosys" in obj:
        return "libc+libgcc"
    if name in CMSIS_TABLES:
        return "cmsis_fft_tables"
    if name.startswith("arm_"):
        return "cmsis_fft_code"
    if name in CRYPTO_LIBS:
        return CRYPTO_LIBS[name]
    if name.startswith("ef_") and name.endswith(".o"):
        return name[3:-2]
    if (APP / name).with_suffix(".c").is_file():
        return "app:" + name.removesuffix(".o")  # the node application (firmware/app), linked or in lib.a
    return "port:" + name.removesuffix(".o")


def parse_map(text: str) -> dict[str, dict[str, int]]:
    """{module: {"flash": bytes, "ram": bytes}} from the memory-map part of an ld map."""
    body = text.split("Linker script and memory map", 1)[-1]
    out: dict[str, dict[str, int]] = {}
    section = None
    pending = None
    for line in body.splitlines():
        if m := OUT_SEC.match(line):
            section, pending = m.group(1), None
            continue
        if m := OUT_SEC_NAME.match(line):
            section, pending = m.group(1), None
            continue
        size = obj = None
        if m := ONE_LINE.match(line):
            size, obj = int(m.group(3), 16), m.group(4)
        elif m := NAME_ONLY.match(line):
            pending = m.group(1)
            continue
        elif pending and (m := CONT.match(line)):
            size, obj = int(m.group(2), 16), m.group(3)
        pending = None
        if size is None or not size or section is None or obj.startswith("*"):
            continue
        d = out.setdefault(module_of(obj.strip()), {"flash": 0, "ram": 0})
        if section in OUT_FLASH:
            d["flash"] += size
        if section in (".data", ".bss", ".stack"):
            d["ram"] += size
    return out


def section_sizes(elf: Path) -> dict[str, int]:
    out = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = int(parts[1])
    return sizes


# Commissioning (docs/baseline.md): the core's modules, and its state in RAM (app/node_app.c's
# g_comm); everything else it uses is borrowed (the FFT buffers between windows, the model's buffers).
COMMISSIONING_MODULES = ("baseline", "commission", "sha256")
COMMISSIONING_STATE = ("g_comm",)


def symbol_sizes(elf: Path, names: tuple[str, ...]) -> dict[str, int]:
    """Sizes of the named data symbols (arm-none-eabi-nm -S); absent ones are left out."""
    out = subprocess.run(["arm-none-eabi-nm", "-S", str(elf)], capture_output=True, text=True, check=True).stdout
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] in names:
            sizes[parts[3]] = int(parts[1], 16)
    return sizes


def commissioning(mods: dict[str, dict[str, int]], elf: Path) -> dict:
    """The commissioning baseline's flash (its core modules; libsodium's SHA-256, which hashes the
    record for the status, is counted when OTA does not bring it already) and its own static RAM."""
    names = [m for m in COMMISSIONING_MODULES if m in mods]
    if "ota" not in mods and "libsodium_sha256" in mods:
        names.append("libsodium_sha256")
    state = symbol_sizes(elf, COMMISSIONING_STATE)
    return {"flash": sum(mods[m]["flash"] for m in names), "ram": sum(state.values()),
            "modules": {m: mods[m]["flash"] for m in names}, "state": state}


def features_v2(mods: dict[str, dict[str, int]], elf: Path) -> dict:
    """Flash of the v2 front end (ef_lowfreq; v1's ef_features is shared) and the libm it brings (tan);
    RAM: the feature buffers both definitions share (app/node_app.c's g_buf: v1's window and FFT output,
    v2's segment/FFT buffer, LF stream and overlap), the v2 plan and state live in the pipeline (g_node)."""
    syms = symbol_sizes(elf, ("tan", "__kernel_tan", "__ieee754_rem_pio2", "__kernel_rem_pio2"))
    ram = symbol_sizes(elf, ("g_buf", "g_node"))
    return {"flash": mods.get("lowfreq", {}).get("flash", 0), "libm_tan": sum(syms.values()),
            "linked": "lowfreq" in mods, "shared_feature_buffers": ram.get("g_buf", 0),
            "node_state_with_pipeline": ram.get("g_node", 0)}


def report(elf: Path, map_path: Path, board: str) -> dict:
    s = section_sizes(elf)
    mods = parse_map(map_path.read_text())
    text = sum(s.get(k, 0) for k in (".isr_vector", ".text", ".ARM.exidx"))
    model = s.get(".model", 0)  # an artifact linked into flash (real boards)
    data, bss, stack = s.get(".data", 0), s.get(".bss", 0), s.get(".stack", 0)
    # the engine is its layer walk (engine) and the per-layer kernel the build linked (layer_ref or layer_m4)
    group = {"engine": "engine", "layer": "engine", "features": "features"}
    ef = {k: sum(v["flash"] for name, v in mods.items() if group.get(name.split("_")[0]) == k)
          for k in ("engine", "features")}
    return {
        "board": board, "image": elf.name, "compiler": "arm-none-eabi-gcc -Os, nano.specs",
        "text": text, "data": data, "bss": bss, "stack_reserved": stack,
        "model_in_flash": model, "flash_total": text + model + data, "static_ram_total": data + bss + stack,
        "engine_features_flash": ef["engine"] + ef["features"],
        "engine_features_share": round((ef["engine"] + ef["features"]) / max(1, text + model + data), 4),
        # feature definition v2 (docs/features.md): the streaming front end (core ef_lowfreq) on top of v1's
        # features, and the RAM it needs beyond v1's (its plan and state inside the pipeline; its buffers are
        # v1's two FFT buffers, shared)
        "features_v2": features_v2(mods, elf),
        "commissioning": commissioning(mods, elf),
        # why/hint of an anomalous v2 window (core ef_diagnosis) and the libm double cos it brings
        # (the contact angle, as Python's math.cos); no static RAM
        "diagnosis": {"flash": mods.get("diagnosis", {}).get("flash", 0),
                      "libm_cos": sum(symbol_sizes(elf, ("cos", "__kernel_cos", "__kernel_sin")).values())},
        "modules": dict(sorted(mods.items(), key=lambda kv: -kv[1]["flash"] - kv[1]["ram"])),
    }


def table(r: dict) -> str:
    lines = [f"{r['board']} {r['image']}: text {r['text']} B, data {r['data']} B, bss {r['bss']} B, "
             f"stack {r['stack_reserved']} B",
             f"  flash {r['flash_total']} B (model {r['model_in_flash']} B), static RAM {r['static_ram_total']} B (data + bss + stack)",
             f"  engine + features: {r['engine_features_flash']} B flash = "
             f"{100 * r['engine_features_share']:.1f}% of the image",
             f"  features v2 (ef_lowfreq): {r['features_v2']['flash']} B flash, + libm tan "
             f"{r['features_v2']['libm_tan']} B; feature buffers shared by v1 and v2 "
             f"{r['features_v2']['shared_feature_buffers']} B, node state with the v1/v2 pipeline "
             f"{r['features_v2']['node_state_with_pipeline']} B",
             f"  commissioning: {r['commissioning']['flash']} B flash "
             f"({' + '.join(f'{k} {v}' for k, v in r['commissioning']['modules'].items())}), "
             f"{r['commissioning']['ram']} B static RAM",
             f"  diagnosis (why/hint): {r['diagnosis']['flash']} B flash, + libm cos {r['diagnosis']['libm_cos']} B",
             f"  {'module':<22}{'flash':>8}{'ram':>8}"]
    for k, v in r["modules"].items():
        lines.append(f"  {k:<22}{v['flash']:>8}{v['ram']:>8}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("elf", type=Path)
    ap.add_argument("map", type=Path)
    ap.add_argument("--board", required=True)
    ap.add_argument("--json", type=Path, required=True)
    a = ap.parse_args(argv)
    r = report(a.elf, a.map, a.board)
    a.json.write_text(json.dumps(r, indent=2) + "\n")
    txt = table(r)
    a.json.with_suffix(".txt").write_text(txt)
    sys.stdout.write(txt)
    return 0


if __name__ == "__main__":
    sys.exit(main())
