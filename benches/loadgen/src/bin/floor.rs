//! The "floor" of benches/net.py: the same servers as the Python ones, in plain
//! Rust, on one thread with one level-triggered epoll and nonblocking sockets
//! (no thread per connection, no batching tricks a Python loop could not use).
//! The least CPU per request any event loop can hope for on these workloads.
//!
//!   floor --proto tcp|unix|udp [--addr ADDR] [--http] [--tls --cert PEM --key PEM]
//!
//! Echoes every byte (every datagram for udp) back. With --http (tcp only) it
//! answers each request head ("\r\n\r\n"-terminated, no body) with a keep-alive
//! 'Hello, World!' response instead. With --tls (tcp only) every connection
//! is a rustls server connection (ring provider) and the same is done on the
//! plaintext; a close_notify is answered with one and the socket closed.
//! Prints {"addr": ...} on stdout when listening, then serves until killed.

use ferroloop_loadgen::tls::{flush_tls, pump_in};
use ferroloop_loadgen::*;
use std::io::{self, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::fd::{IntoRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::sync::Arc;

const LISTENER: u64 = u64::MAX;
const HTTP_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

#[derive(Default)]
struct Conn {
    inbuf: Vec<u8>,  // http: bytes of an incomplete request head
    out: Vec<u8>,    // bytes the socket did not take yet (plain); decrypted bytes to answer (tls)
    waiting_out: bool,
    tls: Option<rustls::ServerConnection>,
    closing: bool, // tls: the peer's close_notify came and ours is being flushed
}

struct Server {
    ep: Epoll,
    conns: Vec<Option<Conn>>, // indexed by fd
    scratch: AlignedBuf,
    plain: AlignedBuf, // tls: decrypted bytes
    http: bool,
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// Appends the answer to `data` to `out`: the data itself (echo), or one
/// response per complete request head in `inbuf` + `data` (http).
fn answer(http: bool, inbuf: &mut Vec<u8>, out: &mut Vec<u8>, data: &[u8]) {
    if http {
        inbuf.extend_from_slice(data);
        let mut start = 0;
        while let Some(p) = inbuf[start..].windows(4).position(|w| w == b"\r\n\r\n") {
            start += p + 4;
            out.extend_from_slice(HTTP_RESPONSE);
        }
        inbuf.drain(..start);
    } else {
        out.extend_from_slice(data);
    }
}

impl Server {
    fn drop_conn(&mut self, fd: RawFd) {
        let _ = self.ep.delete(fd);
        close(fd);
        self.conns[fd as usize] = None;
    }

    /// Writes what the connection owes; waits for EPOLLOUT (and stops reading) while any is left.
    fn flush(&mut self, fd: RawFd) -> io::Result<bool> {
        let c = self.conns[fd as usize].as_mut().unwrap();
        if let Some(t) = c.tls.as_mut() {
            let done = match flush_tls(&mut **t, fd) {
                Ok(d) => d,
                Err(_) => return Ok(false),
            };
            if done && c.closing {
                return Ok(false); // our close_notify is out: drop the connection
            }
            let need_out = !done;
            if need_out != c.waiting_out {
                c.waiting_out = need_out;
                self.ep.modify(fd, if need_out { OUT } else { IN }, fd as u64)?;
            }
            return Ok(true);
        }
        let mut off = 0;
        while off < c.out.len() {
            match write(fd, &c.out[off..]) {
                Ok(n) => off += n,
                Err(e) if would_block(&e) => break,
                Err(_) => return Ok(false),
            }
        }
        c.out.drain(..off);
        let need_out = !c.out.is_empty();
        if need_out != c.waiting_out {
            c.waiting_out = need_out;
            self.ep.modify(fd, if need_out { OUT } else { IN }, fd as u64)?;
        }
        Ok(true)
    }

    fn on_readable_tls(&mut self, fd: RawFd) -> io::Result<()> {
        let http = self.http;
        let c = self.conns[fd as usize].as_mut().unwrap();
        let t = c.tls.as_mut().unwrap();
        let (inbuf, out) = (&mut c.inbuf, &mut c.out);
        let res = pump_in(&mut **t, fd, &mut self.scratch, &mut self.plain, |p| {
            answer(http, inbuf, out, p);
            Ok(())
        });
        let Ok(peer_done) = res else {
            self.drop_conn(fd);
            return Ok(());
        };
        if !c.out.is_empty() {
            let res = t.writer().write_all(&c.out);
            c.out.clear();
            if res.is_err() {
                self.drop_conn(fd); // the connection is closed for writing
                return Ok(());
            }
        }
        if peer_done {
            t.send_close_notify();
            c.closing = true;
        }
        if !self.flush(fd)? {
            self.drop_conn(fd);
        }
        Ok(())
    }

    fn on_readable(&mut self, fd: RawFd) -> io::Result<()> {
        if self.tls.is_some() {
            return self.on_readable_tls(fd);
        }
        let n = match read(fd, &mut self.scratch) {
            Ok(0) => return Ok(self.drop_conn(fd)),
            Ok(n) => n,
            Err(e) if would_block(&e) => return Ok(()),
            Err(_) => return Ok(self.drop_conn(fd)),
        };
        let c = self.conns[fd as usize].as_mut().unwrap();
        answer(self.http, &mut c.inbuf, &mut c.out, &self.scratch[..n]);
        if !self.flush(fd)? {
            self.drop_conn(fd);
        }
        Ok(())
    }
}

fn serve_stream(listen_fd: RawFd, http: bool, tls: Option<Arc<rustls::ServerConfig>>) -> io::Result<()> {
    raise_nofile();
    set_nonblocking(listen_fd)?;
    let mut s = Server {
        ep: Epoll::new(1024)?,
        conns: Vec::new(),
        scratch: AlignedBuf::new(256 * 1024, 0),
        plain: AlignedBuf::new(64 * 1024, 0),
        http,
        tls,
    };
    s.ep.add(listen_fd, IN, LISTENER)?;
    loop {
        for (ev, token) in s.ep.wait(-1)? {
            if token == LISTENER {
                loop {
                    // SAFETY: accept4 without an address out-parameter.
                    let fd = unsafe {
                        libc::accept4(listen_fd, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
                    };
                    if fd < 0 {
                        break;
                    }
                    let one: libc::c_int = 1;
                    // SAFETY: TCP_NODELAY as asyncio sets it; fails harmlessly on Unix sockets.
                    unsafe {
                        libc::setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, (&one as *const i32).cast(), 4)
                    };
                    if s.conns.len() <= fd as usize {
                        s.conns.resize_with(fd as usize + 1, || None);
                    }
                    let mut conn = Conn::default();
                    if let Some(cfg) = &s.tls {
                        let mut t = rustls::ServerConnection::new(cfg.clone())
                            .map_err(|e| io::Error::other(format!("TLS server: {e}")))?;
                        t.set_buffer_limit(None);
                        conn.tls = Some(t);
                    }
                    s.conns[fd as usize] = Some(conn);
                    s.ep.add(fd, IN, fd as u64)?;
                }
                continue;
            }
            let fd = token as RawFd;
            if s.conns.get(fd as usize).map_or(true, |c| c.is_none()) {
                continue;
            }
            if ev & OUT != 0 {
                if !s.flush(fd)? {
                    s.drop_conn(fd);
                }
            } else if ev & (IN | libc::EPOLLHUP as u32 | libc::EPOLLERR as u32) != 0 {
                s.on_readable(fd)?;
            }
        }
    }
}

fn serve_udp(sock: UdpSocket) -> io::Result<()> {
    sock.set_nonblocking(true)?;
    let fd = sock.into_raw_fd();
    let mut ep = Epoll::new(16)?;
    ep.add(fd, IN, 0)?;
    let mut buf = AlignedBuf::new(65536, 0);
    loop {
        ep.wait(-1)?;
        loop {
            // SAFETY: storage/len are valid out-parameters; buf is valid for its length.
            unsafe {
                let mut sa: libc::sockaddr_storage = std::mem::zeroed();
                let mut len = std::mem::size_of_val(&sa) as libc::socklen_t;
                let n = libc::recvfrom(fd, buf.as_mut_ptr().cast(), buf.len(), 0, (&mut sa as *mut libc::sockaddr_storage).cast(), &mut len);
                if n < 0 {
                    break;
                }
                libc::sendto(fd, buf.as_ptr().cast(), n as usize, 0, (&sa as *const libc::sockaddr_storage).cast(), len);
            }
        }
    }
}

fn main() {
    let args = Args::from_env();
    let proto = args.get("--proto").unwrap_or("tcp");
    let http = args.flag("--http");
    let tls = if args.flag("--tls") {
        if proto != "tcp" {
            die("--tls needs --proto tcp");
        }
        let cert = args.get("--cert").unwrap_or_else(|| die("--tls needs --cert PEM"));
        let key = args.get("--key").unwrap_or_else(|| die("--tls needs --key PEM"));
        Some(ferroloop_loadgen::tls::server_config(cert, key).unwrap_or_else(|e| die(&e.to_string())))
    } else {
        None
    };
    let res = match proto {
        "tcp" => {
            let l = TcpListener::bind(args.get("--addr").unwrap_or("127.0.0.1:0")).unwrap_or_else(|e| die(&e.to_string()));
            println!("{{\"addr\": \"{}\"}}", l.local_addr().unwrap());
            io::stdout().flush().unwrap();
            serve_stream(l.into_raw_fd(), http, tls)
        }
        "unix" => {
            let path = args.get("--addr").unwrap_or_else(|| die("unix needs --addr PATH"));
            let _ = std::fs::remove_file(path);
            let l = UnixListener::bind(path).unwrap_or_else(|e| die(&e.to_string()));
            println!("{{\"addr\": \"{path}\"}}");
            io::stdout().flush().unwrap();
            serve_stream(l.into_raw_fd(), http, None)
        }
        "udp" => {
            let s = UdpSocket::bind(args.get("--addr").unwrap_or("127.0.0.1:0")).unwrap_or_else(|e| die(&e.to_string()));
            println!("{{\"addr\": \"{}\"}}", s.local_addr().unwrap());
            io::stdout().flush().unwrap();
            serve_udp(s)
        }
        _ => die("--proto must be tcp, unix or udp"),
    };
    if let Err(e) = res {
        eprintln!("floor: {e}");
        std::process::exit(1);
    }
}
