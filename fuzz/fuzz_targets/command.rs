//! The multichat example's command parser (`multichat/src/protocol.rs`,
//! included as it is): any text frame parses or is `MALFORMED_COMMAND`, never
//! a panic; room ids come out as canonical decimal text.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../multichat/src/protocol.rs"]
mod protocol;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(protocol::Command::Join { room: Some(room) } | protocol::Command::Leave { room: Some(room) }) =
        protocol::parse(text)
    {
        assert!(!room.is_empty() && room.bytes().all(|b| b.is_ascii_digit()));
        assert!(room == "0" || !room.starts_with('0'), "not canonical: {room}");
    }
});
