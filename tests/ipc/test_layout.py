"""The numpy dtypes agree with marllb_shm.h field by field, as compiled by gcc."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from marllbd.ipc import layout as L
from marllbd.native import header_dir

STRUCTS = {
    "marllb_region_hdr_t": L.REGION_HDR,
    "marllb_weights_slot_t": L.WEIGHTS_SLOT_HDR,
    "marllb_sample_t": L.SAMPLE,
    "marllb_server_obs_t": L.SERVER_OBS,
    "marllb_frame_hdr_t": L.FRAME_HDR,
}
UNSIGNED_CONSTANTS = ("CACHELINE", "DEFAULT_K", "MAX_K", "MAX_SERVERS", "MAX_RING_LEN")
"""marllb_shm.h's MARLLB_<name> and layout's <name>."""
GEOMETRIES = [(1, 2, 1), (16, 8, 128), (64, 8, 128), (7, 4, 33), (1024, 1024, 4096)]


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """Compile a program printing sizeof/offsetof of every field and derived sizes."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.fail("gcc is required to check the layout against the C header")
    lines = ['#include "marllb_shm.h"', "#include <stdio.h>", "int main(void) {"]
    for struct, dt in STRUCTS.items():
        lines.append(f'printf("{struct} %zu\\n", sizeof({struct}));')
        for field in dt.names:
            lines.append(f'printf("{struct}.{field} %zu\\n", offsetof({struct}, {field}));')
            lines.append(
                f'printf("{struct}.{field}.size %zu\\n", sizeof((({struct}*)0)->{field}));'
            )
    for cap, ring, k in GEOMETRIES:
        tag = f"{cap}_{ring}_{k}"
        lines += [
            f'printf("stride_{tag} %llu\\n", (unsigned long long)marllb_server_stride({k}));',
            f'printf("frame_{tag} %llu\\n", (unsigned long long)marllb_frame_size({cap}, {k}));',
            f'printf("weights_{tag} %llu\\n", (unsigned long long)marllb_weights_size({cap}));',
            f'printf("ring_{tag} %llu\\n", (unsigned long long)marllb_ring_offset({cap}));',
            f'printf("region_{tag} %llu\\n", '
            f"(unsigned long long)marllb_region_size({cap}, {ring}, {k}));",
        ]
    lines += [
        'printf("magic %llu\\n", (unsigned long long)MARLLB_SHM_MAGIC);',
        'printf("version %u\\n", MARLLB_SHM_VERSION);',
        *(f'printf("{name} %u\\n", MARLLB_{name});' for name in UNSIGNED_CONSTANTS),
        "return 0; }",
    ]
    d = tmp_path_factory.mktemp("layout")
    src, exe = d / "layout.c", d / "layout"
    src.write_text("\n".join(lines))
    subprocess.run(
        [cc, "-std=c11", "-Wall", "-Werror", "-I", str(header_dir()), str(src), "-o", str(exe)],
        check=True,
    )
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return {k: int(v) for k, v in (line.split() for line in out.splitlines())}


@pytest.mark.parametrize("struct", list(STRUCTS))
def test_struct_fields_match_c(c_layout: dict[str, int], struct: str) -> None:
    dt = STRUCTS[struct]
    assert dt.itemsize == c_layout[struct]
    for field in dt.names:
        ftype, offset = dt.fields[field][:2]
        assert offset == c_layout[f"{struct}.{field}"], f"{struct}.{field} offset"
        assert ftype.itemsize == c_layout[f"{struct}.{field}.size"], f"{struct}.{field} size"


def test_every_c_field_is_mirrored(c_layout: dict[str, int]) -> None:
    """Padding aside, the fields cover each struct: no C field is missing in Python."""
    for struct, dt in STRUCTS.items():
        covered = sum(dt.fields[f][0].itemsize for f in dt.names)
        header = (Path(header_dir()) / "marllb_shm.h").read_text()
        body = header.split(f"}} {struct};")[0].rsplit("typedef struct", 1)[1]
        c_fields = [
            m.group(1)
            for m in re.finditer(r"^\s*(?:uint\d+_t|double)\s+(\w+)", body, re.MULTILINE)
            if not m.group(1).startswith("_")
        ]
        assert sorted(c_fields) == sorted(dt.names), struct
        assert covered <= dt.itemsize


@pytest.mark.parametrize(("cap", "ring", "k"), GEOMETRIES)
def test_derived_sizes_match_c(c_layout: dict[str, int], cap: int, ring: int, k: int) -> None:
    tag = f"{cap}_{ring}_{k}"
    assert L.server_stride(k) == c_layout[f"stride_{tag}"]
    assert L.frame_size(cap, k) == c_layout[f"frame_{tag}"]
    assert L.weights_size(cap) == c_layout[f"weights_{tag}"]
    assert L.ring_offset(cap) == c_layout[f"ring_{tag}"]
    assert L.region_size(cap, ring, k) == c_layout[f"region_{tag}"]
    assert L.frame_dtype(cap, k).itemsize == L.frame_size(cap, k)
    assert L.server_dtype(k).itemsize == L.server_stride(k)


def test_constants_match_c(c_layout: dict[str, int]) -> None:
    assert c_layout["magic"] == L.MAGIC
    assert c_layout["version"] == L.VERSION
    for name in UNSIGNED_CONSTANTS:  # Python's one definition of each is in layout
        assert c_layout[name] == getattr(L, name), name


def test_live_words_are_aligned() -> None:
    for off in (L.OFF_FRAMES_PUBLISHED, L.OFF_HEARTBEAT, L.OFF_EPOCH):
        assert off % 8 == 0
    assert L.frame_size(3, 5) % L.CACHELINE == 0
    dt = L.frame_dtype(2, 4)
    assert dt.fields["servers"][1] == L.FRAME_HDR.itemsize
    assert np.dtype(dt).fields["seq"][1] == 0


def test_frame_header_unpack_matches_dtype() -> None:
    """FRAME_HDR_UNPACK reads the same fields, in order, as the FRAME_HDR dtype."""
    hdr = np.zeros(1, dtype=L.FRAME_HDR)
    for i, name in enumerate(L.FRAME_HDR.names):
        hdr[name] = 1000 * (i + 1) + i
    unpacked = L.FRAME_HDR_UNPACK.unpack_from(hdr.tobytes())
    assert list(unpacked) == [int(hdr[name][0]) for name in L.FRAME_HDR.names]
