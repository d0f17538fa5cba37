//! Logs, through `tracing`, to stderr: stdout carries only what a command is
//! for (PROTOCOL.md).
//!
//! `RUST_LOG` chooses what is shown (an `EnvFilter`); without it, the app's
//! own events at info and everything else at warn. `RUST_LOG=debug` shows one
//! line per handshake outcome (target `ws_token_auth`: authenticated, or
//! refused and why), naming tokens by their fingerprint only.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// What is shown without `RUST_LOG`.
pub const DEFAULT_FILTER: &str = "multichat=info,warn";

/// Installs the subscriber: an `EnvFilter` from `RUST_LOG` (else
/// [`DEFAULT_FILTER`]), formatted lines on stderr. Does nothing if one is
/// installed already.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let ansi = std::io::stderr().is_terminal();
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}
