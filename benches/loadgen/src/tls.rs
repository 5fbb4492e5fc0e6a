//! rustls pieces shared by `loadgen` (the TLS client modes) and `floor` (its
//! TLS echo): configurations built from PEM files, and a sans-IO connection
//! driven over a nonblocking fd (read_tls / process_new_packets / reader, and
//! write_tls until the socket is full). The ring crypto provider, TLS 1.3
//! and 1.2 enabled (TLS 1.3 is what gets negotiated with every server here).

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::RawFd;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ConnectionCommon, SideData};

fn err<E: std::fmt::Debug>(what: &str) -> impl FnOnce(E) -> io::Error + '_ {
    move |e| io::Error::other(format!("{what}: {e:?}"))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration trusting only the CA certificate(s) in `ca_pem`.
/// Session resumption is off, so every handshake is a full one (ECDHE and
/// the server's signature), the same on every server.
pub fn client_config(ca_pem: &str) -> io::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).map_err(err(ca_pem))? {
        roots.add(cert.map_err(err(ca_pem))?).map_err(err(ca_pem))?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(err("TLS versions"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// A server configuration with the certificate chain in `cert_pem` and the key in `key_pem`.
pub fn server_config(cert_pem: &str, key_pem: &str) -> io::Result<Arc<rustls::ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert_pem)
        .map_err(err(cert_pem))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err(cert_pem))?;
    let key = PrivateKeyDer::from_pem_file(key_pem).map_err(err(key_pem))?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(err("TLS versions"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(err("server certificate"))?;
    Ok(Arc::new(cfg))
}

/// The name to verify the server's certificate against: the host part of HOST:PORT
/// (an IP address is checked against the certificate's IP SANs).
pub fn server_name(addr: &str) -> io::Result<ServerName<'static>> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(err("server name"))
}

pub fn new_client(cfg: &Arc<rustls::ClientConfig>, name: &ServerName<'static>) -> io::Result<rustls::ClientConnection> {
    let mut c = rustls::ClientConnection::new(cfg.clone(), name.clone()).map_err(err("TLS client"))?;
    c.set_buffer_limit(None); // a whole 100 KiB message is accepted by writer() at once
    Ok(c)
}

/// A nonblocking fd as rustls' I/O: `read`, and `sendmsg(MSG_NOSIGNAL)` for
/// (vectored) writes. EAGAIN comes back as `ErrorKind::WouldBlock`.
pub struct FdIo(pub RawFd);

impl Read for FdIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        crate::read(self.0, buf)
    }
}

impl Write for FdIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        crate::write(self.0, buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // SAFETY: IoSlice is ABI-compatible with iovec on Unix; msg points at it for the call.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = bufs.len().min(1024) as _;
            crate::cvt_size(libc::sendmsg(self.0, &msg, libc::MSG_NOSIGNAL))
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes the pending TLS records to the socket. Ok(true): all written;
/// Ok(false): the socket is full, wait for EPOLLOUT and call again.
pub fn flush_tls<S: SideData>(c: &mut ConnectionCommon<S>, fd: RawFd) -> io::Result<bool> {
    while c.wants_write() {
        match c.write_tls(&mut FdIo(fd)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Reads from the socket (one `read` into `net`, again while that filled
/// it) and feeds rustls from that buffer, decrypting as it goes and handing
/// each plaintext chunk to `sink` (through `plain`). rustls' own `read_tls`
/// would read at most 4 KiB per system call; this way a 100 KiB message
/// costs a few. Returns Ok(true) when the peer is done: close_notify
/// received or EOF. The caller flushes afterwards (the handshake, alerts and
/// key updates queue records to send).
pub fn pump_in<S: SideData>(
    c: &mut ConnectionCommon<S>,
    fd: RawFd,
    net: &mut [u8],
    plain: &mut [u8],
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<bool> {
    loop {
        let n = match crate::read(fd, net) {
            Ok(0) => return Ok(true), // EOF (with or without close_notify)
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        };
        let mut rest = &net[..n];
        while !rest.is_empty() {
            if c.read_tls(&mut rest)? == 0 {
                return Ok(true); // after close_notify rustls takes nothing more
            }
            if let Err(e) = c.process_new_packets() {
                let _ = flush_tls(c, fd); // the alert, if any
                return Err(io::Error::other(format!("TLS: {e}")));
            }
            loop {
                match c.reader().read(plain) {
                    Ok(0) => return Ok(true), // close_notify
                    Ok(n) => sink(&plain[..n])?,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
        if n < net.len() {
            return Ok(false); // level-triggered epoll reports anything that arrives meanwhile
        }
    }
}
