//! The `multichat` command: see the library's docs and `docs/PROTOCOL.md`.

use std::process::ExitCode;

/// A server's many small, short-lived allocations (frames, requests, tasks)
/// cost less in mimalloc than in glibc's malloc (BENCHMARKS.md). Built
/// without transparent huge pages (`no_thp`): memory a join storm frees is
/// purged and faulted in again, and the kernel zeroed a whole 2 MiB page
/// each time. On a host whose THP setting is `always`, set
/// `MIMALLOC_ALLOW_THP=0` in the environment as well.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    multichat::logging::init();
    multichat::main(std::env::args().skip(1).collect()).await
}
