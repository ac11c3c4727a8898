"""hall-city stays up under city traffic: the short form of `bench/city.py` as a soak (everything that runs
gets one; the bench's long form is `--halls 50 --seconds 1800`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.mosquitto
def test_hall_city_stays_up_through_a_minute_of_city_traffic() -> None:
    seconds = float(os.environ.get("HALL_CITY_SOAK_SECONDS", "60"))
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "city.py"), "--halls", "40", "--seconds", str(seconds),
                          "--interval", "1", "--alert-every", "15", "--workers", "2"],
                         cwd=ROOT, capture_output=True, text=True, timeout=seconds + 240)
    out = run.stdout
    print(out)
    assert run.returncode == 0, out + run.stderr[-3000:]
    assert "nothing lost: MET" in out, out
    soak = re.search(r"hall-city soak: alive through the run yes, errors logged 0, exit at stop 0, "
                     r"RSS start → end (\d+) → (\d+) MB", out)
    assert soak, out
    start, end = (int(x) for x in soak.groups())
    assert end - start <= 25, f"hall-city's RSS grew {start} → {end} MB in {seconds:.0f} s"
