//! ferroloop: asyncio's event loop, with the hot paths in Rust.
//!
//! This file only registers; each asyncio concept lives in its own module.
#![deny(clippy::undocumented_unsafe_blocks)]
// No panic may reach Python (it would surface as PanicException): outside
// the unit tests, no unwrap/expect/panic!, and PyO3's panicking borrows are
// disallowed in clippy.toml in favour of try_borrow()?.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::todo,
        clippy::unimplemented,
        clippy::unreachable
    )
)]

mod clock;
mod doorbell;
mod errors;
mod event_loop;
mod handles;
mod parked;
mod poller;
mod process;
mod py;
mod queued;
mod recycled;
mod sys;
pub mod timers;
mod transports;
mod virtual_clock;

use pyo3::prelude::*;

#[pymodule]
fn _ferroloop(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<handles::Handle>()?;
    m.add_class::<handles::TimerHandle>()?;
    handles::install_traverse(m.py());
    m.add_class::<event_loop::LoopCore>()?;
    event_loop::install_scheduling(&m.py().get_type::<event_loop::LoopCore>())?;
    m.add_class::<virtual_clock::VirtualClock>()?;
    m.add_class::<transports::stream::StreamTransport>()?;
    m.add_class::<transports::datagram::DatagramTransport>()?;
    m.add_class::<transports::tls::TlsProtocol>()?;
    m.add_class::<transports::pipes::ReadPipeTransport>()?;
    m.add_class::<transports::pipes::WritePipeTransport>()?;
    m.add_class::<transports::registry::TransportMap>()?;
    m.add_class::<transports::server::Accepted>()?;
    m.add_function(wrap_pyfunction!(transports::server::serve, m)?)?;
    m.add_function(wrap_pyfunction!(process::watch_child, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

/// The sentence build.rs stops an unsupported build with.
#[cfg(test)]
mod platform {
    include!("../build/platform.rs");

    #[test]
    fn linux_builds() {
        assert_eq!(check_target_os("linux"), Ok(()));
    }

    #[test]
    fn other_systems_get_one_sentence_naming_what_works() {
        for os in ["macos", "windows", "freebsd", "ios", ""] {
            let msg = check_target_os(os).unwrap_err();
            assert!(msg.starts_with("ferroloop supports Linux only"), "{msg}");
            assert!(msg.contains(&format!("`{os}`")), "{msg}");
            assert!(msg.contains("CPython 3.11-3.15"), "{msg}");
            assert_eq!(msg.matches(". ").count(), 0, "one sentence: {msg}");
            assert!(!msg.contains('\n'), "{msg}");
        }
    }
}
