//! The `multichat` command: see the library's docs and `docs/PROTOCOL.md`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    multichat::logging::init();
    multichat::main(std::env::args().skip(1).collect()).await
}
