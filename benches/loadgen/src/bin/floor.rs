//! The "floor" of benches/net.py: the same servers as the Python ones, in plain
//! Rust, on one thread with one level-triggered epoll and nonblocking sockets
//! (no thread per connection, no batching tricks a Python loop could not use).
//! The least CPU per request any event loop can hope for on these workloads.
//!
//!   floor --proto tcp|unix|udp [--addr ADDR] [--http]
//!
//! Echoes every byte (every datagram for udp) back. With --http (tcp only) it
//! answers each request head ("\r\n\r\n"-terminated, no body) with a keep-alive
//! 'Hello, World!' response instead. Prints {"addr": ...} on stdout when
//! listening, then serves until killed.

use ferroloop_loadgen::*;
use std::io::{self, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::fd::{IntoRawFd, RawFd};
use std::os::unix::net::UnixListener;

const LISTENER: u64 = u64::MAX;
const HTTP_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

#[derive(Default)]
struct Conn {
    inbuf: Vec<u8>,  // http: bytes of an incomplete request head
    out: Vec<u8>,    // bytes the socket did not take yet
    waiting_out: bool,
}

struct Server {
    ep: Epoll,
    conns: Vec<Option<Conn>>, // indexed by fd
    scratch: AlignedBuf,
    http: bool,
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

    fn on_readable(&mut self, fd: RawFd) -> io::Result<()> {
        let n = match read(fd, &mut self.scratch) {
            Ok(0) => return Ok(self.drop_conn(fd)),
            Ok(n) => n,
            Err(e) if would_block(&e) => return Ok(()),
            Err(_) => return Ok(self.drop_conn(fd)),
        };
        let c = self.conns[fd as usize].as_mut().unwrap();
        if self.http {
            c.inbuf.extend_from_slice(&self.scratch[..n]);
            let mut start = 0;
            while let Some(p) = c.inbuf[start..].windows(4).position(|w| w == b"\r\n\r\n") {
                start += p + 4;
                c.out.extend_from_slice(HTTP_RESPONSE);
            }
            c.inbuf.drain(..start);
        } else {
            c.out.extend_from_slice(&self.scratch[..n]);
        }
        if !self.flush(fd)? {
            self.drop_conn(fd);
        }
        Ok(())
    }
}

fn serve_stream(listen_fd: RawFd, http: bool) -> io::Result<()> {
    raise_nofile();
    set_nonblocking(listen_fd)?;
    let mut s = Server { ep: Epoll::new(1024)?, conns: Vec::new(), scratch: AlignedBuf::new(256 * 1024, 0), http };
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
                    s.conns[fd as usize] = Some(Conn::default());
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
    let res = match proto {
        "tcp" => {
            let l = TcpListener::bind(args.get("--addr").unwrap_or("127.0.0.1:0")).unwrap_or_else(|e| die(&e.to_string()));
            println!("{{\"addr\": \"{}\"}}", l.local_addr().unwrap());
            io::stdout().flush().unwrap();
            serve_stream(l.into_raw_fd(), http)
        }
        "unix" => {
            let path = args.get("--addr").unwrap_or_else(|| die("unix needs --addr PATH"));
            let _ = std::fs::remove_file(path);
            let l = UnixListener::bind(path).unwrap_or_else(|e| die(&e.to_string()));
            println!("{{\"addr\": \"{path}\"}}");
            io::stdout().flush().unwrap();
            serve_stream(l.into_raw_fd(), http)
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
