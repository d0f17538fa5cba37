"""A chat client on Python's `websockets` library, compression on (its
default), signing in the way the Android client does: a Cookie header, no
Origin. Driven by multichat/tests/compression.rs; `.ci/run` installs the
library into `.deps` beside this file (see requirements.txt).

usage: python3 websockets_client.py WS_URL TOKEN PASTE
Prints `EXT <the server's Sec-WebSocket-Extensions>`, then `READY` once in
room 1, then each chat message it receives as one JSON line. When a message
says "bye" it sends PASTE, and exits after PASTE comes back.
"""

import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".deps"))

from websockets.asyncio.client import connect  # noqa: E402


def say(line):
    print(line, flush=True)


async def main(url, token, paste):
    async with connect(url, additional_headers={"Cookie": f"key={token}"}, compression="deflate") as socket:
        say(f"EXT {socket.response.headers.get('Sec-WebSocket-Extensions', '')}")
        await socket.send(json.dumps({"command": "join", "room": "1"}))
        async for data in socket:
            frame = json.loads(data)
            if frame.get("join") == "1":
                say("READY")
            elif frame.get("msg_type") == 0:
                say(json.dumps(frame))
                if frame["message"] == "bye":
                    await socket.send(json.dumps({"command": "send", "room": "1", "message": paste}))
                elif frame["message"] == paste:
                    break
    say(f"CLOSED {socket.close_code}")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
