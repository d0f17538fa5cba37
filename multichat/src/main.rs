//! The `multichat` command: see the library's docs and `docs/PROTOCOL.md`.

use std::process::ExitCode;

/// A server's many small, short-lived allocations (frames, requests, tasks)
/// cost less in mimalloc than in glibc's malloc (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    multichat::logging::init();
    multichat::main(std::env::args().skip(1).collect()).await
}
