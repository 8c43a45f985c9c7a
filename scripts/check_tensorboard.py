#!/usr/bin/env python3
"""Check that TensorBoard reads radit's event files.

Usage: check_tensorboard.py EVENT_DIR EXPECTED_JSON

EXPECTED_JSON maps each tag to a list of [step, value] pairs, e.g.
{"train/loss": [[1, 2.5], [2, 2.25]]}. Exits non-zero, naming the difference, unless
TensorBoard's EventAccumulator reads exactly those scalars (values compared as float32).
Needs `pip install tensorboard`; the Rust test `python_tensorboard_reads_the_events`
runs it when RADIT_PYTHON names such a python.
"""
import json
import struct
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    event_dir, expected_path = sys.argv[1], sys.argv[2]
    with open(expected_path) as f:
        expected = json.load(f)
    acc = EventAccumulator(event_dir, size_guidance={"scalars": 0})
    acc.Reload()
    tags = sorted(acc.Tags().get("scalars", []))
    problems = []
    if tags != sorted(expected):
        problems.append(f"scalar tags {tags}, expected {sorted(expected)}")
    for tag, pairs in sorted(expected.items()):
        if tag not in tags:
            continue
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        want = [(int(s), f32(v)) for s, v in pairs]
        if got != want:
            problems.append(f"{tag}: read {got}, expected {want}")
    if problems:
        print("TensorBoard check FAILED:\n  " + "\n  ".join(problems))
        sys.exit(1)
    n = sum(len(p) for p in expected.values())
    print(f"TensorBoard read {n} scalars in {len(tags)} tags from {event_dir}: OK")


if __name__ == "__main__":
    main()
