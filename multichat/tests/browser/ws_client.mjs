// A chat client on the `ws` library, compression on (`perMessageDeflate`,
// ws's default offer), signing in the way the Android client does: a Cookie
// header, no Origin. Driven by multichat/tests/compression.rs.
//
// usage: node ws_client.mjs WS_URL TOKEN PASTE
// Prints `EXT <the server's Sec-WebSocket-Extensions>`, then `READY` once in
// room 1, then each chat message it receives as one JSON line. When a
// message says "bye" it sends PASTE, and exits after PASTE comes back.
import WebSocket from "ws";

const [url, token, paste] = process.argv.slice(2);
const socket = new WebSocket(url, {
  headers: { Cookie: `key=${token}` },
  perMessageDeflate: true,
});
const send = (frame) => socket.send(JSON.stringify(frame));

socket.on("upgrade", (response) => {
  console.log(`EXT ${response.headers["sec-websocket-extensions"] ?? ""}`);
});
socket.on("open", () => send({ command: "join", room: "1" }));
socket.on("message", (data) => {
  const frame = JSON.parse(data.toString());
  if (frame.join === "1") {
    console.log("READY");
  } else if (frame.msg_type === 0) {
    console.log(JSON.stringify(frame));
    if (frame.message === "bye") {
      send({ command: "send", room: "1", message: paste });
    } else if (frame.message === paste) {
      socket.close(1000);
    }
  }
});
socket.on("close", (code) => {
  console.log(`CLOSED ${code}`);
});
socket.on("error", (error) => {
  console.log(`ERROR ${error.message}`);
  process.exit(1);
});
