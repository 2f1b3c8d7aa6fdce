"""Generated telemetry series with data-quality faults planted at known indices (shared by the dq tests)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

RULES_YAML = """\
record_type: vehicle_telemetry
fields:
  device_id: {type: string}
  ts:        {type: timestamp}
  speed:     {type: number, min: 0, max: 70, unit: m/s}
  battery:   {type: number, min: 0, max: 100, unit: "%"}
  lat:       {type: number, min: -90, max: 90}
  min_temp:  {type: number, unit: degC}
  max_temp:  {type: number, unit: degC}
  status:    {type: string, values: [ok, degraded, fault]}
  note:      {type: string, required: false, nullable: true}
time:
  field: ts
  series_key: device_id
  max_gap: 30
  time_unit: s
  epoch_unit: EPOCH_UNIT
rates:
  - {field: speed, max: 12, unit: m/s, time_unit: s}
constraints:
  - {name: temp_order, expr: "min_temp <= max_temp"}
"""

START = 1_700_000_000
DEVICES = ("dev-a", "dev-b")

#: index -> (rule, field) of the one failure planted there
FAULTS: dict[int, tuple[str, str]] = {
    101: ("required", "battery"),     # missing value
    203: ("range", "battery"),        # out of range
    305: ("time_order", "ts"),        # time going backwards
    407: ("max_gap", "ts"),           # a 2-minute hole in the series
    509: ("rate", "speed"),           # impossible acceleration (a +30 m/s spike in 1 s)
    611: ("constraint", "temp_order"),  # cross-field violation
    713: ("null", "speed"),           # null where not allowed
    815: ("type", "lat"),             # wrong type
    917: ("values", "status"),        # not an allowed value
}


def rules_yaml(epoch_unit: str = "s") -> str:
    return RULES_YAML.replace("EPOCH_UNIT", epoch_unit)


def _stamp(seconds: int, timestamps: str) -> Any:
    if timestamps == "iso":
        return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
    if timestamps == "epoch_ms":
        return seconds * 1000
    return seconds


def series(n: int = 1200, faults: bool = True, timestamps: str = "iso") -> Iterator[dict[str, Any]]:
    """Two interleaved devices, one point per device per second; `FAULTS` planted when `faults`."""
    offsets = {d: 0 for d in DEVICES}
    for i in range(n):
        device = DEVICES[i % len(DEVICES)]
        step = i // len(DEVICES)
        if faults and i == 407:
            offsets[device] += 120  # the device was offline for two minutes
        t = START + step + offsets[device]
        record: dict[str, Any] = {
            "device_id": device,
            "ts": _stamp(t, timestamps),
            "speed": round(20.0 + 10.0 * math.sin(step / 30.0), 3),
            "battery": round(95.0 - (step % 1000) * 0.05, 2),
            "lat": 48.1 + step * 1e-5,
            "min_temp": 12.0,
            "max_temp": 21.5,
            "status": "ok",
        }
        if i % 7 == 0:
            record["note"] = None if i % 2 else "checked"
        if faults:
            if i == 101:
                del record["battery"]
            elif i == 203:
                record["battery"] = 120.0
            elif i == 305:
                record["ts"] = _stamp(t - 5, timestamps)
            elif i == 509:
                record["speed"] += 30.0
            elif i == 611:
                record["min_temp"] = 26.0
            elif i == 713:
                record["speed"] = None
            elif i == 815:
                record["lat"] = "north"
            elif i == 917:
                record["status"] = "exploded"
        yield record
