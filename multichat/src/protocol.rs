//! Client frames of the multichat protocol, parsed (no I/O, no state: the
//! fuzz target `fuzz/fuzz_targets/command.rs` includes this file as it is).

use serde_json::Value;

/// A well-formed client command. `room` is the room id as canonical decimal
/// text, or `None` when the frame's `room` is missing or not a room id (the
/// chat answers that with `ROOM_INVALID` or `ROOM_ACCESS_DENIED`, per the
/// protocol's error order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Join {
        room: Option<String>,
    },
    Leave {
        room: Option<String>,
    },
    Send {
        room: Option<String>,
        message: String,
    },
    /// Hands over a fresh token for the socket to live by.
    Refresh {
        token: String,
    },
}

/// The frame is not a command: answered `MALFORMED_COMMAND`, socket kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Parses a text frame: a JSON object with a known `command`, and for `send`
/// a string `message`.
pub fn parse(text: &str) -> Result<Command, Malformed> {
    let Ok(Value::Object(mut frame)) = serde_json::from_str::<Value>(text) else { return Err(Malformed) };
    let room = frame.get("room").and_then(room_id);
    match frame.get("command").and_then(Value::as_str) {
        Some("join") => Ok(Command::Join { room }),
        Some("leave") => Ok(Command::Leave { room }),
        Some("send") => match frame.remove("message") {
            Some(Value::String(message)) => Ok(Command::Send { room, message }),
            _ => Err(Malformed),
        },
        Some("refresh") => match frame.remove("token") {
            Some(Value::String(token)) => Ok(Command::Refresh { token }),
            _ => Err(Malformed),
        },
        _ => Err(Malformed),
    }
}

/// A room id: a string of digits or a non-negative integer, as canonical
/// decimal text (`"01"` and `1` are room `"1"`).
pub fn room_id(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => n.as_u64().map(|n| n.to_string()),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<u64>().ok().map(|n| n.to_string())
        }
        _ => None,
    }
}
