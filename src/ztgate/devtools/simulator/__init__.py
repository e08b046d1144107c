"""A local stand-in for api.anthropic.com, for tests and the offline demo.

The simulator speaks the Claude API as the official SDK expects it (JSON bodies, the error
envelope, SSE framing, pagination shapes, absolute batch `results_url`s) and answers
deterministically, so a test can check that what reached "upstream" is what it echoes back.
Requests that load skills or use code execution get a container, which a later request may
name again by id (only ids the simulator created).
Named scenarios (see `Scenario`) produce failures a gateway must survive: error statuses,
slow, broken, truncated or hanging streams. A test can also script what "the model" says
(`REPLY_HEADER`: base64 of the reply text, also the chosen tool's input) and how finely a
stream splits it (`DELTA_CHARS_HEADER`), to plant data in responses that no request held.

Run it out of process with `python -m ztgate.devtools.simulator --port 8788`; it prints its
base URL. `GET /_simulator/received` shows what it received, `DELETE` clears that.

`server` composes the API areas (`messages`, `batches`, `files`, `skills`, `models`) over the
wire conventions (`api`, `bodies`, `pagination`), the `scenarios`, reply synthesis
(`replies`), `containers` and the static `catalogue`.
"""

from ztgate.devtools.simulator.api import (
    DEFAULT_API_KEY,
    DELTA_CHARS_HEADER,
    REPLY_HEADER,
    SCENARIO_HEADER,
)
from ztgate.devtools.simulator.scenarios import Scenario
from ztgate.devtools.simulator.server import ReceivedRequest, UpstreamSimulator, main

__all__ = [
    "DEFAULT_API_KEY",
    "DELTA_CHARS_HEADER",
    "REPLY_HEADER",
    "SCENARIO_HEADER",
    "ReceivedRequest",
    "Scenario",
    "UpstreamSimulator",
    "main",
]
