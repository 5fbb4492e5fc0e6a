//! Socket addresses as the socket module shows them, kept in Rust until
//! someone asks.
//!
//! A transport's `sockname` and `peername` are read once, when it is made
//! (asyncio's semantics: they survive the socket), but an idle connection
//! should not carry two Python tuples for it: an IPv4 or IPv6 address is
//! kept as a `SocketAddr` and becomes a tuple on `get_extra_info`. Other
//! families (Unix paths) keep the socket module's own object.

use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// One end of a connection.
pub enum Addr {
    /// The socket had none (asyncio stores None when the call fails).
    Unknown,
    Inet(SocketAddr),
    Py(Py<PyAny>),
}

impl Addr {
    /// An address from the kernel, or `Unknown` for a family kept elsewhere.
    pub fn from_kernel(addr: Option<rustix::net::SocketAddrAny>) -> Self {
        addr.and_then(|a| SocketAddr::try_from(a).ok())
            .map_or(Addr::Unknown, Addr::Inet)
    }

    pub fn to_py(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self {
            Addr::Unknown => Ok(py.None()),
            Addr::Inet(a) => Ok(inet_to_py(py, *a)?.into_any().unbind()),
            Addr::Py(o) => Ok(o.clone_ref(py)),
        }
    }

    pub fn traverse(&self, visit: &pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        match self {
            Addr::Py(o) => visit.call(o),
            _ => Ok(()),
        }
    }
}

/// An IPv4 or IPv6 address as the socket module returns it: `(host, port)`
/// or `(host, port, flowinfo, scope_id)`.
pub fn inet_to_py<'py>(py: Python<'py>, addr: SocketAddr) -> PyResult<Bound<'py, PyTuple>> {
    match addr {
        SocketAddr::V4(a) => PyTuple::new(
            py,
            [
                PyString::new(py, &a.ip().to_string()).into_any(),
                a.port().into_pyobject(py)?.into_any(),
            ],
        ),
        SocketAddr::V6(a) => {
            (ipv6_text(a.ip()), a.port(), a.flowinfo(), a.scope_id()).into_pyobject(py)
        }
    }
}

/// `inet_ntop`'s text for an IPv6 address. Rust's formatting is RFC 5952's,
/// as glibc's is, except for one form glibc still writes in dotted quad:
/// the deprecated "IPv4-compatible" `::a.b.c.d`, whose first 96 bits are
/// zero and whose seventh group is not (else it would be `::1`-like).
fn ipv6_text(ip: &Ipv6Addr) -> String {
    let s = ip.segments();
    if s[..6] == [0; 6] && s[6] != 0 {
        let o = ip.octets();
        return format!("::{}.{}.{}.{}", o[12], o[13], o[14], o[15]);
    }
    ip.to_string()
}

/// A destination the socket module would not need to resolve: a numeric
/// host of the socket's family and a port.
pub fn py_to_inet(addr: &Bound<'_, PyAny>) -> Option<SocketAddr> {
    let t = addr.cast::<PyTuple>().ok()?;
    if t.len() < 2 {
        return None;
    }
    let host = t.get_item(0).ok()?;
    let host = host.cast::<PyString>().ok()?.to_str().ok()?;
    let port: u16 = t.get_item(1).ok()?.extract().ok()?;
    match (host.parse::<IpAddr>().ok()?, t.len()) {
        (IpAddr::V4(ip), 2) => Some(SocketAddr::from((ip, port))),
        (IpAddr::V6(ip), 2) => Some(SocketAddr::from((ip, port))),
        (IpAddr::V6(ip), 4) => {
            let flow: u32 = t.get_item(2).ok()?.extract().ok()?;
            let scope: u32 = t.get_item(3).ok()?.extract().ok()?;
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip, port, flow, scope,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::ipv6_text;
    use std::net::Ipv6Addr;

    #[test]
    fn ipv6_text_matches_inet_ntop() {
        let cases = [
            ("::", "::"),
            ("::1", "::1"),
            ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
            ("::1.2.3.4", "::1.2.3.4"),
            ("::0.0.1.0", "::100"),
            ("::2:3", "::0.2.0.3"),
            ("::ffff:0:1.2.3.4", "::ffff:0:102:304"),
            ("0:0:0:0:0:1:0:0", "::1:0:0"),
            ("fe80::1:2", "fe80::1:2"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
        ];
        for (input, want) in cases {
            let ip: Ipv6Addr = input.parse().unwrap();
            assert_eq!(ipv6_text(&ip), want, "{input}");
        }
    }
}
