"""A teacher worker whose model stalls on some batches: for the poll-interval fault scenario.

Runs ``tango teacher`` with ``TeacherClassifier.logits`` wrapped so that batches 2 and 3
sleep ``TANGO_TEST_STALL_S`` seconds first, longer than the consumer's poll interval.
"""

import os
import sys
import time

from models.teacher import TeacherClassifier
from stream_app.tools.cli import main

_logits = TeacherClassifier.logits
_calls = {"n": 0}


def stalling_logits(self, texts):
    _calls["n"] += 1
    if _calls["n"] in (2, 3):
        time.sleep(float(os.environ["TANGO_TEST_STALL_S"]))
    return _logits(self, texts)


TeacherClassifier.logits = stalling_logits
sys.exit(main(["teacher"]))
