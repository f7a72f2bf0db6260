"""Count the tests of a JUnit XML report by folder and fail when no Kafka test passed.

Used by ``.ci/run``: a green run whose integration and fault tests were all skipped would say
nothing about the pipeline on a real broker.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import Counter


def counts(path: str) -> Counter:
    passed: Counter = Counter()
    for case in ET.parse(path).iter("testcase"):
        if any(child.tag in ("skipped", "failure", "error") for child in case):
            continue
        name = case.get("classname", "")
        passed["integration" if name.startswith("tests.integration") else "unit"] += 1
        if name.startswith("tests.integration.test_faults"):
            passed["faults"] += 1
    return passed


def main(path: str) -> int:
    passed = counts(path)
    print(f"CI: {passed['unit']} unit tests, {passed['integration']} integration tests on the real broker "
          f"(of them {passed['faults']} fault scenarios) passed")
    if not passed["integration"] or not passed["faults"]:
        print("CI: no integration or no fault test ran on the real broker; failing", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
