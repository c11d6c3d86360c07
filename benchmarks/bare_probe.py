"""The framework's floor for `/probe`: a bare aiohttp server whose one handler
does what a canary `/probe` must at least do, and nothing else.

Run as `python -m benchmarks.bare_probe SANDBOX_URL`: it listens on a free
loopback port and prints its base URL. `GET /probe` sends the canary's
multipart POST to SANDBOX_URL's `/execute/` with aiohttp's client, reads and
parses the JSON answer, and answers with a fixed body the size of the
exporter's answer for one target (gzipped when the client accepts it). No
state, no metrics, no deadlines: what is left of the exporter's cost above
this is the exporter's own (B4 sets them side by side).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import sys

import aiohttp
from aiohttp import web

# About the size of the exporter's answer to `/probe?probe=canary` for one
# target with one canary (34 samples and their HELP and TYPE lines, 4.6 KB).
BODY = b'sandbox_canary_status{canary="shell",target="t0000"} 0.0\n' * 80
CANARY = json.dumps({"commands": ["echo $((2+2))"]})


async def serve(sandbox: str) -> None:
    session = aiohttp.ClientSession()

    async def probe(request: web.Request) -> web.Response:
        form = aiohttp.FormData()
        form.add_field("config", CANARY, content_type="application/json")
        async with session.post(sandbox + "execute/", data=form) as answer:
            json.loads(await answer.read())
        headers = {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        body = BODY
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/probe", probe)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"http://127.0.0.1:{port}/", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
