"""SIGHUP asks for a bundle check; a worker with no bundle logs it and lives on."""

import asyncio
import os
import signal

from stream_app.shutdown import log_reload_requests


class Recorder:
    def __init__(self):
        self.events = []

    def info(self, event, **fields):
        self.events.append((event, fields))


def test_sighup_without_a_bundle_is_logged_not_fatal():
    logger = Recorder()

    async def main():
        log_reload_requests(logger, "passthrough: no bundle")
        try:
            os.kill(os.getpid(), signal.SIGHUP)  # the default action would end this test process
            for _ in range(100):
                if logger.events:
                    break
                await asyncio.sleep(0.01)
        finally:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)

    asyncio.run(main())
    assert logger.events == [("SIGHUP: nothing to reload", {"reason": "passthrough: no bundle"})]
