// Which targets ferroloop builds for, shared by build.rs and a unit test.
//
// ferroloop's poller, child watching and signal wake-ups are Linux system
// calls (epoll, pidfd, eventfd), so on any other OS the build would stop
// with a compiler error from deep inside a dependency. The build script
// stops first, with this one sentence.

/// `Err(sentence)` when `target_os` (cargo's `CARGO_CFG_TARGET_OS`) is not
/// one ferroloop runs on.
pub fn check_target_os(target_os: &str) -> Result<(), String> {
    if target_os == "linux" {
        Ok(())
    } else {
        Err(format!(
            "ferroloop supports Linux only (x86_64 wheels for CPython 3.11-3.15, or \
             a source build on any Linux with Rust 1.85+), and this build targets \
             `{target_os}`; on this platform use asyncio's own loop or uvloop."
        ))
    }
}
