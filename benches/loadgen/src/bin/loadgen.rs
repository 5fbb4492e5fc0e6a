//! The load client of benches/net.py: one thread, one epoll, nonblocking sockets.
//!
//!   loadgen echo --proto tcp|unix|udp --addr ADDR --conns N --size BYTES
//!                --duration SECS [--warmup SECS] [--server-pid PID] [--tls --ca PEM]
//!       N connections (connected UDP sockets for udp), each doing request ->
//!       response ping-pong: send SIZE bytes, wait until SIZE bytes came back,
//!       check them, send the next. After --warmup seconds the measured window
//!       of --duration seconds starts; the server's CPU time (utime + stime of
//!       /proc/PID/stat) is read at both ends of that window. Prints one JSON line.
//!       With --tls (tcp only) every connection is a rustls client trusting the
//!       CA in --ca; the handshakes are done before the warm-up starts.
//!
//!   loadgen handshake --addr HOST:PORT --ca PEM --conns N [--size 16]
//!                     --duration SECS [--warmup SECS] [--server-pid PID]
//!       N connections in parallel, each in a cycle: TCP connect, a full TLS
//!       handshake (rustls, no session resumption), one SIZE-byte message and
//!       its echo, close_notify, wait for the server's close_notify (or EOF),
//!       close. Counts completed cycles ("requests") like echo does, so the
//!       server CPU per request is its CPU per TLS connection served.
//!
//!   loadgen hold --addr HOST:PORT --conns N [--inflight 64]
//!       Opens N TCP connections (at most --inflight handshakes at once), sends
//!       one byte on each and waits for its echo, so every connection is known
//!       to be accepted and served by the server. Prints one JSON line, then
//!       holds them all, idle, until its stdin is closed.

use ferroloop_loadgen::tls::{self, flush_tls, pump_in};
use ferroloop_loadgen::*;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::fd::{IntoRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

const UDP_RESEND: Duration = Duration::from_millis(200);

struct Conn {
    fd: RawFd,
    send: AlignedBuf,
    recv: AlignedBuf,
    sent: usize,
    recvd: usize,
    seq: u64,
    want_out: bool,
    sent_at: Instant,
    tls: Option<rustls::ClientConnection>,
}

fn stamp(buf: &mut [u8], seq: u64) {
    let b = seq.to_le_bytes();
    let n = buf.len().min(8);
    buf[..n].copy_from_slice(&b[..n]);
    if buf.len() >= 16 {
        let len = buf.len();
        buf[len - 8..].copy_from_slice(&b);
    }
}

fn stamped(buf: &[u8], seq: u64) -> bool {
    let mut want = vec![0u8; buf.len().min(16)];
    let b = seq.to_le_bytes();
    let n = buf.len().min(8);
    want[..n].copy_from_slice(&b[..n]);
    if buf[..n] != want[..n] {
        return false;
    }
    buf.len() < 16 || buf[buf.len() - 8..] == b
}

fn connect(proto: &str, addr: &str) -> io::Result<RawFd> {
    match proto {
        "tcp" => {
            let s = TcpStream::connect(addr)?;
            s.set_nodelay(true)?;
            s.set_nonblocking(true)?;
            Ok(s.into_raw_fd())
        }
        "unix" => {
            let s = UnixStream::connect(addr)?;
            s.set_nonblocking(true)?;
            Ok(s.into_raw_fd())
        }
        "udp" => {
            let s = UdpSocket::bind("127.0.0.1:0")?;
            s.connect(addr)?;
            s.set_nonblocking(true)?;
            Ok(s.into_raw_fd())
        }
        _ => die("--proto must be tcp, unix or udp"),
    }
}

/// A blocking TCP connect and TLS handshake, then the socket goes nonblocking.
fn tls_connect(
    addr: &str,
    cfg: &std::sync::Arc<rustls::ClientConfig>,
) -> io::Result<(RawFd, rustls::ClientConnection)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut c = tls::new_client(cfg, &tls::server_name(addr)?)?;
    while c.is_handshaking() {
        c.complete_io(&mut s)?;
    }
    s.set_nonblocking(true)?;
    Ok((s.into_raw_fd(), c))
}

/// Sends what is left of the current request; switches EPOLLOUT interest as needed.
fn push(ep: &Epoll, c: &mut Conn, token: u64, udp: bool) -> io::Result<()> {
    if let Some(t) = c.tls.as_mut() {
        if c.sent < c.send.len() {
            t.writer().write_all(&c.send[c.sent..])?; // buffered and encrypted by rustls
            c.sent = c.send.len();
        }
        let need_out = !flush_tls(&mut **t, c.fd)?;
        if need_out != c.want_out {
            ep.modify(c.fd, if need_out { IN | OUT } else { IN }, token)?;
            c.want_out = need_out;
        }
        return Ok(());
    }
    while c.sent < c.send.len() {
        match write(c.fd, &c.send[c.sent..]) {
            Ok(n) => c.sent += if udp { c.send.len() } else { n },
            Err(e) if would_block(&e) => break,
            Err(e) => return Err(e),
        }
    }
    let need_out = c.sent < c.send.len();
    if need_out != c.want_out {
        ep.modify(c.fd, if need_out { IN | OUT } else { IN }, token)?;
        c.want_out = need_out;
    }
    Ok(())
}

fn start_request(ep: &Epoll, c: &mut Conn, token: u64, udp: bool) -> io::Result<()> {
    c.seq += 1;
    stamp(&mut c.send, c.seq);
    c.sent = 0;
    c.recvd = 0;
    c.sent_at = Instant::now();
    push(ep, c, token, udp)
}

fn echo(args: &Args) -> io::Result<()> {
    let proto = args.get("--proto").unwrap_or("tcp").to_string();
    let addr = args.get("--addr").unwrap_or_else(|| die("--addr is required")).to_string();
    let conns: usize = args.num("--conns", 10);
    let size: usize = args.num("--size", 1024);
    let duration: f64 = args.num("--duration", 3.0);
    let warmup: f64 = args.num("--warmup", 0.5);
    let server_pid: u32 = args.num("--server-pid", 0);
    let udp = proto == "udp";
    if size == 0 || (udp && size > 65000) {
        die("bad --size");
    }
    let tls_cfg = if args.flag("--tls") {
        if proto != "tcp" {
            die("--tls needs --proto tcp");
        }
        Some(tls::client_config(args.get("--ca").unwrap_or_else(|| die("--tls needs --ca PEM")))?)
    } else {
        None
    };
    raise_nofile();

    let mut ep = Epoll::new(1024)?;
    let mut cs: Vec<Conn> = Vec::with_capacity(conns);
    let mut net = AlignedBuf::new(256 * 1024, 0);
    let mut plain = AlignedBuf::new(64 * 1024, 0);
    for i in 0..conns {
        let (fd, tls_conn) = match &tls_cfg {
            Some(cfg) => {
                let (fd, c) = tls_connect(&addr, cfg)?;
                (fd, Some(c))
            }
            None => (connect(&proto, &addr)?, None),
        };
        ep.add(fd, IN, i as u64)?;
        cs.push(Conn {
            fd,
            send: AlignedBuf::new(size, 0xA5),
            // one spare byte so that an over-long datagram is noticed
            recv: AlignedBuf::new(size + 1, 0),
            sent: 0,
            recvd: 0,
            seq: (i as u64) << 40,
            want_out: false,
            sent_at: Instant::now(),
            tls: tls_conn,
        });
    }
    for (i, c) in cs.iter_mut().enumerate() {
        start_request(&ep, c, i as u64, udp)?;
    }

    let begin = Instant::now();
    let warm_end = begin + Duration::from_secs_f64(warmup);
    let end = warm_end + Duration::from_secs_f64(duration);
    let mut measuring = false;
    let (mut done, mut resends, mut warm_done) = (0u64, 0u64, 0u64);
    let (mut t0, mut srv0, mut cli0) = (begin, None, 0.0);
    loop {
        let now = Instant::now();
        if !measuring && now >= warm_end {
            measuring = true;
            srv0 = if server_pid != 0 { proc_cpu_seconds(server_pid) } else { None };
            cli0 = self_cpu_seconds();
            t0 = Instant::now();
        }
        if now >= end {
            break;
        }
        let left_ms = ((end - now).as_secs_f64() * 1000.0).ceil() as i32;
        for (ev, token) in ep.wait(left_ms.clamp(1, 50))? {
            let i = token as usize;
            let c = &mut cs[i];
            if ev & (libc::EPOLLERR as u32 | libc::EPOLLHUP as u32) != 0 && ev & IN == 0 {
                return Err(io::Error::other(format!("connection {i}: error/hangup from the server")));
            }
            if ev & OUT != 0 {
                push(&ep, c, token, udp)?;
            }
            if ev & IN == 0 {
                continue;
            }
            if let Some(t) = c.tls.as_mut() {
                let (recv, recvd) = (&mut c.recv, &mut c.recvd);
                let closed = pump_in(&mut **t, c.fd, &mut net, &mut plain, |p| {
                    if *recvd + p.len() > size {
                        return Err(io::Error::other("the server sent more bytes than it was sent"));
                    }
                    recv[*recvd..*recvd + p.len()].copy_from_slice(p);
                    *recvd += p.len();
                    Ok(())
                })
                .map_err(|e| io::Error::other(format!("connection {i}: {e}")))?;
                if closed {
                    return Err(io::Error::other(format!("connection {i}: closed by the server")));
                }
                if c.recvd < size {
                    if t.wants_write() {
                        c.sent = c.send.len();
                        push(&ep, c, token, false)?; // e.g. a key update's answer
                    }
                    continue;
                }
                if !stamped(&c.recv[..size], c.seq) {
                    return Err(io::Error::other(format!("connection {i}: echo does not match request")));
                }
                if measuring {
                    done += 1;
                } else {
                    warm_done += 1;
                }
                start_request(&ep, c, token, false)?;
                continue;
            }
            loop {
                if udp {
                    match read(c.fd, &mut c.recv) {
                        Ok(n) => {
                            if n != size {
                                return Err(io::Error::other(format!("datagram of {n} bytes, wanted {size}")));
                            }
                            if !stamped(&c.recv[..n], c.seq) {
                                continue; // a late reply to a request that was re-sent
                            }
                        }
                        Err(e) if would_block(&e) => break,
                        Err(e) => return Err(e),
                    }
                } else {
                    match read(c.fd, &mut c.recv[c.recvd..size]) {
                        Ok(0) => return Err(io::Error::other(format!("connection {i}: closed by the server"))),
                        Ok(n) => c.recvd += n,
                        Err(e) if would_block(&e) => break,
                        Err(e) => return Err(e),
                    }
                    if c.recvd < size {
                        continue;
                    }
                    if !stamped(&c.recv[..size], c.seq) {
                        return Err(io::Error::other(format!("connection {i}: echo does not match request")));
                    }
                }
                if measuring {
                    done += 1;
                } else {
                    warm_done += 1;
                }
                start_request(&ep, c, token, udp)?;
                if !udp {
                    break; // the next response cannot be there yet
                }
            }
        }
        if udp {
            let now = Instant::now();
            for (i, c) in cs.iter_mut().enumerate() {
                if now - c.sent_at > UDP_RESEND {
                    resends += 1;
                    c.sent = 0;
                    c.sent_at = now;
                    push(&ep, c, i as u64, udp)?;
                }
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let srv1 = if server_pid != 0 { proc_cpu_seconds(server_pid) } else { None };
    let cli = self_cpu_seconds() - cli0;
    let server_cpu = match (srv0, srv1) {
        (Some(a), Some(b)) => format!("{:.4}", b - a),
        _ => "null".into(),
    };
    println!(
        "{{\"requests\": {done}, \"seconds\": {secs:.4}, \"rps\": {:.1}, \"server_cpu\": {server_cpu}, \
         \"client_cpu\": {cli:.4}, \"warmup_requests\": {warm_done}, \"resends\": {resends}, \
         \"conns\": {conns}, \"size\": {size}, \"tls\": {}}}",
        done as f64 / secs,
        tls_cfg.is_some()
    );
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Hold {
    Connecting,
    Echoing,
    Done,
}

fn tcp_connect_nonblocking(addr: &SocketAddr) -> io::Result<RawFd> {
    let SocketAddr::V4(v4) = addr else { die("hold: IPv4 addresses only") };
    // SAFETY: plain syscalls on a fresh socket and a fully initialised sockaddr_in.
    unsafe {
        let fd = cvt(libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0))?;
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = v4.port().to_be();
        sa.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
        let r = libc::connect(fd, (&sa as *const libc::sockaddr_in).cast(), std::mem::size_of_val(&sa) as u32);
        if r < 0 {
            let e = io::Error::last_os_error();
            if !would_block(&e) {
                close(fd);
                return Err(e);
            }
        }
        Ok(fd)
    }
}

fn hold(args: &Args) -> io::Result<()> {
    let addr = args.get("--addr").unwrap_or_else(|| die("--addr is required"));
    let addr = addr.to_socket_addrs()?.next().unwrap_or_else(|| die("bad --addr"));
    let conns: usize = args.num("--conns", 10_000);
    let inflight: usize = args.num("--inflight", 64);
    let limit = raise_nofile();
    if (conns as u64) + 16 > limit {
        die(&format!("RLIMIT_NOFILE is {limit}, too low for {conns} connections"));
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let mut ep = Epoll::new(1024)?;
    let mut fds: Vec<RawFd> = Vec::with_capacity(conns);
    let mut state: Vec<Hold> = Vec::with_capacity(conns);
    let (mut pending, mut done) = (0usize, 0usize);
    while done < conns {
        while pending < inflight && fds.len() < conns {
            let fd = tcp_connect_nonblocking(&addr)?;
            ep.add(fd, OUT, fds.len() as u64)?;
            fds.push(fd);
            state.push(Hold::Connecting);
            pending += 1;
        }
        if Instant::now() > deadline {
            return Err(io::Error::other(format!("hold: only {done} of {conns} connections served after 120 s")));
        }
        for (ev, token) in ep.wait(100)? {
            let i = token as usize;
            let fd = fds[i];
            match state[i] {
                Hold::Connecting => {
                    let mut err: libc::c_int = 0;
                    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
                    // SAFETY: err/len are valid out-parameters.
                    unsafe {
                        libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR, (&mut err as *mut i32).cast(), &mut len)
                    };
                    if err != 0 {
                        return Err(io::Error::from_raw_os_error(err));
                    }
                    if ev & OUT != 0 {
                        write(fd, b"x")?;
                        ep.modify(fd, IN, token)?;
                        state[i] = Hold::Echoing;
                    }
                }
                Hold::Echoing => {
                    let mut b = [0u8; 8];
                    match read(fd, &mut b) {
                        Ok(1) => {
                            ep.delete(fd)?;
                            state[i] = Hold::Done;
                            pending -= 1;
                            done += 1;
                        }
                        Ok(n) => return Err(io::Error::other(format!("hold: echo of {n} bytes, wanted 1"))),
                        Err(e) if would_block(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
                Hold::Done => {}
            }
        }
    }
    println!("{{\"connected\": {done}, \"seconds\": {:.3}}}", started.elapsed().as_secs_f64());
    io::stdout().flush()?;
    // Hold until told to stop (stdin closed).
    let mut sink = Vec::new();
    let _ = io::stdin().read_to_end(&mut sink);
    for fd in fds {
        close(fd);
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Hs {
    Connecting,
    Handshaking,
    Echoing,
    Closing,
}

struct HsConn {
    fd: RawFd,
    tls: rustls::ClientConnection,
    state: Hs,
    recvd: usize,
    seq: u64,
    want_out: bool,
    started: Instant,
}

const HS_TIMEOUT: Duration = Duration::from_secs(10);

fn hs_open(
    ep: &Epoll,
    addr: &SocketAddr,
    cfg: &std::sync::Arc<rustls::ClientConfig>,
    name: &rustls::pki_types::ServerName<'static>,
    token: u64,
    seq: u64,
) -> io::Result<HsConn> {
    let fd = tcp_connect_nonblocking(addr)?;
    let one: libc::c_int = 1;
    // SAFETY: TCP_NODELAY on our own socket, as the echo connections have it.
    unsafe { libc::setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, (&one as *const i32).cast(), 4) };
    ep.add(fd, OUT, token)?;
    Ok(HsConn {
        fd,
        tls: tls::new_client(cfg, name)?,
        state: Hs::Connecting,
        recvd: 0,
        seq,
        want_out: true,
        started: Instant::now(),
    })
}

/// Flushes the connection's TLS records and sets its epoll interest to IN (+ OUT while any are left).
fn hs_flush(ep: &Epoll, c: &mut HsConn, token: u64) -> io::Result<()> {
    let need_out = !flush_tls(&mut *c.tls, c.fd)?;
    if need_out != c.want_out {
        ep.modify(c.fd, if need_out { IN | OUT } else { IN }, token)?;
        c.want_out = need_out;
    }
    Ok(())
}

fn handshake(args: &Args) -> io::Result<()> {
    let addr_s = args.get("--addr").unwrap_or_else(|| die("--addr is required")).to_string();
    let addr = addr_s.to_socket_addrs()?.next().unwrap_or_else(|| die("bad --addr"));
    let conns: usize = args.num("--conns", 10);
    let size: usize = args.num("--size", 16);
    let duration: f64 = args.num("--duration", 3.0);
    let warmup: f64 = args.num("--warmup", 0.5);
    let server_pid: u32 = args.num("--server-pid", 0);
    let cfg = tls::client_config(args.get("--ca").unwrap_or_else(|| die("--ca PEM is required")))?;
    let name = tls::server_name(&addr_s)?;
    if size == 0 {
        die("bad --size");
    }
    raise_nofile();

    let mut ep = Epoll::new(1024)?;
    let mut send = AlignedBuf::new(size, 0xA5);
    let mut recv: Vec<AlignedBuf> = (0..conns).map(|_| AlignedBuf::new(size, 0)).collect();
    let mut net = AlignedBuf::new(64 * 1024, 0);
    let mut plain = AlignedBuf::new(16 * 1024, 0);
    let mut seq = 0u64;
    let mut cs: Vec<HsConn> = Vec::with_capacity(conns);
    for i in 0..conns {
        seq += 1;
        cs.push(hs_open(&ep, &addr, &cfg, &name, i as u64, seq)?);
    }

    let begin = Instant::now();
    let warm_end = begin + Duration::from_secs_f64(warmup);
    let end = warm_end + Duration::from_secs_f64(duration);
    let mut measuring = false;
    let (mut done, mut warm_done, mut unclean) = (0u64, 0u64, 0u64);
    let (mut t0, mut srv0, mut cli0) = (begin, None, 0.0);
    let mut last_check = begin;
    loop {
        let now = Instant::now();
        if !measuring && now >= warm_end {
            measuring = true;
            srv0 = if server_pid != 0 { proc_cpu_seconds(server_pid) } else { None };
            cli0 = self_cpu_seconds();
            t0 = Instant::now();
        }
        if now >= end {
            break;
        }
        if now - last_check > Duration::from_secs(1) {
            last_check = now;
            for (i, c) in cs.iter().enumerate() {
                if now - c.started > HS_TIMEOUT {
                    return Err(io::Error::other(format!("connection {i}: stuck in {:?} for 10 s", c.state)));
                }
            }
        }
        let left_ms = ((end - now).as_secs_f64() * 1000.0).ceil() as i32;
        for (ev, token) in ep.wait(left_ms.clamp(1, 50))? {
            let i = token as usize;
            let c = &mut cs[i];
            if c.state == Hs::Connecting {
                let mut err: libc::c_int = 0;
                let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
                // SAFETY: err/len are valid out-parameters.
                unsafe {
                    libc::getsockopt(c.fd, libc::SOL_SOCKET, libc::SO_ERROR, (&mut err as *mut i32).cast(), &mut len)
                };
                if err != 0 {
                    return Err(io::Error::other(format!("connect: {}", io::Error::from_raw_os_error(err))));
                }
                if ev & OUT == 0 {
                    continue;
                }
                c.state = Hs::Handshaking;
                c.want_out = true;
                hs_flush(&ep, c, token)?; // the ClientHello
                continue;
            }
            if ev & OUT != 0 {
                hs_flush(&ep, c, token)?;
            }
            if ev & (IN | libc::EPOLLHUP as u32 | libc::EPOLLERR as u32) == 0 {
                continue;
            }
            let buf = &mut recv[i];
            let recvd = &mut c.recvd;
            let closing = c.state == Hs::Closing;
            let res = pump_in(&mut *c.tls, c.fd, &mut net, &mut plain, |p| {
                if closing {
                    return Ok(()); // nothing more is expected; ignore it
                }
                if *recvd + p.len() > size {
                    return Err(io::Error::other("the server sent more bytes than it was sent"));
                }
                buf[*recvd..*recvd + p.len()].copy_from_slice(p);
                *recvd += p.len();
                Ok(())
            });
            let peer_done = match res {
                Ok(d) => d,
                Err(_) if closing => {
                    unclean += 1; // e.g. a reset after our close_notify: the cycle itself completed
                    true
                }
                Err(e) => return Err(io::Error::other(format!("connection {i} ({:?}): {e}", c.state))),
            };
            if c.state == Hs::Closing {
                if peer_done {
                    close(c.fd);
                    seq += 1;
                    *c = hs_open(&ep, &addr, &cfg, &name, token, seq)?;
                } else {
                    hs_flush(&ep, c, token)?;
                }
                continue;
            }
            if peer_done {
                return Err(io::Error::other(format!("connection {i}: closed by the server in {:?}", c.state)));
            }
            if c.state == Hs::Handshaking && !c.tls.is_handshaking() {
                stamp(&mut send, c.seq);
                c.tls.writer().write_all(&send)?;
                c.state = Hs::Echoing;
            }
            if c.state == Hs::Echoing && c.recvd == size {
                if !stamped(&recv[i], c.seq) {
                    return Err(io::Error::other(format!("connection {i}: echo does not match request")));
                }
                if measuring {
                    done += 1;
                } else {
                    warm_done += 1;
                }
                c.tls.send_close_notify();
                c.state = Hs::Closing;
            }
            hs_flush(&ep, c, token)?;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let srv1 = if server_pid != 0 { proc_cpu_seconds(server_pid) } else { None };
    let cli = self_cpu_seconds() - cli0;
    for c in &cs {
        close(c.fd);
    }
    let server_cpu = match (srv0, srv1) {
        (Some(a), Some(b)) => format!("{:.4}", b - a),
        _ => "null".into(),
    };
    println!(
        "{{\"requests\": {done}, \"seconds\": {secs:.4}, \"rps\": {:.1}, \"server_cpu\": {server_cpu}, \
         \"client_cpu\": {cli:.4}, \"warmup_requests\": {warm_done}, \"resends\": 0, \"unclean_closes\": {unclean}, \
         \"conns\": {conns}, \"size\": {size}, \"tls\": true}}",
        done as f64 / secs
    );
    Ok(())
}

fn main() {
    let args = Args::from_env();
    let res = match args.positional(0) {
        Some("echo") => echo(&args),
        Some("hold") => hold(&args),
        Some("handshake") => handshake(&args),
        _ => die("usage: loadgen echo|hold|handshake [options] (see the source header)"),
    };
    if let Err(e) = res {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}
