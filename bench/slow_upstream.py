"""A stand-in enrichment API that answers every request after a fixed delay.

Usage: python3 bench/slow_upstream.py PORT DELAY_SECONDS
HTTP/1.1 with keep-alive, so the enricher's connection pool is exercised.
"""

import asyncio
import sys

PORT = int(sys.argv[1])
DELAY = float(sys.argv[2])
BODY = b'{"score":0.5,"source":"slow-upstream"}'
ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)


async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            await asyncio.sleep(DELAY)
            writer.write(ANSWER)
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", PORT)
    async with server:
        await server.serve_forever()


asyncio.run(main())
