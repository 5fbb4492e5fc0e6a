"""ferroloop's networking benchmarks: asyncio vs uvloop vs ferroloop vs a pure-Rust floor.

    .venv/bin/python benches/net.py            # the default run (`make bench-net`), ~9 min
    .venv/bin/python benches/net.py --quick    # shorter windows, one round, 2,000 idle conns (~2 min)
    .venv/bin/python benches/net.py --only tcp1k http-httptools --rounds 3
    .venv/bin/python benches/net.py --loops uvloop ferroloop

Every cell (workload x loop) starts a fresh server process pinned to one CPU
(--server-cpu, default 1) and drives it from a load client pinned to another
(--client-cpu, default 0): benches/loadgen's `loadgen` (Rust, one thread, one
epoll; rustls for the TLS rows) for the echo workloads, the TLS handshakes
and the idle-connection count, `wrk -t1 -c50` for the HTTP(S) ones. The
figure to compare is the **server's CPU time per request** (utime + stime of
/proc/PID/stat across the measured window, divided by the requests completed
in it): once the client, not the server, is the bottleneck, requests/s says
more about the client than about the loop. The
"rust floor" column is benches/loadgen's `floor`, the same servers in plain
Rust on one nonblocking epoll thread: the least CPU per request an event loop
could spend.

Needs the loadgen crate built (`cargo build --release --manifest-path
benches/loadgen/Cargo.toml`, which `make bench-net` does), wrk for the HTTP
rows, httptools / aiohttp for their servers and trustme for the TLS rows'
certificates (made once per run in a temporary directory); a missing piece
turns its cells into n/a. These are measurements, not tests: it exits
non-zero only if a server or client failed (crashed, wrong echo, HTTP errors).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import select
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from run import cpu_model, git_rev, loadavg, module_version  # noqa: E402

LOADGEN_DIR = HERE / "loadgen" / "target" / "release"
LOADGEN = LOADGEN_DIR / "loadgen"
FLOOR = LOADGEN_DIR / "floor"
SERVER = HERE / "net_server.py"

LOOPS = ["asyncio", "uvloop", "ferroloop", "floor"]
# --nostats PYTHON adds this column: ferroloop built with `--features no-stats`
# (`make bench-stats`), to measure what always-on loop.stats() costs.
NOSTATS = "nostats"
LOOP_TITLE = {"asyncio": "asyncio", "uvloop": "uvloop", "ferroloop": "ferroloop", "floor": "rust floor",
              NOSTATS: "no-stats"}
PYTHON = {NOSTATS: sys.executable}  # the interpreter each Python loop's server runs on
NOISY = 0.10  # rounds more than 10% apart on CPU/request -> "~"
FOREIGN = 0.10  # other processes busy >10% of the window on either CPU, every round -> "!"


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    kind: str  # net_server.py --kind
    client: str  # "echo" or "handshake" (loadgen), or "wrk"
    proto: str = "tcp"  # loadgen --proto / floor --proto
    size: int = 1024
    floor_http: bool = False
    needs: str | None = None  # a module the Python server imports
    tls: bool = False  # server gets --cert/--key, the client speaks TLS (--tls --ca, https://)


WORKLOADS = [
    Workload("tcp1k", "TCP echo, Protocol, 1 KiB", "tcp-proto", "echo", size=1024),
    Workload("tcp10k", "TCP echo, Protocol, 10 KiB", "tcp-proto", "echo", size=10 * 1024),
    Workload("tcp100k", "TCP echo, Protocol, 100 KiB", "tcp-proto", "echo", size=100 * 1024),
    Workload("streams1k", "TCP echo, streams, 1 KiB", "tcp-streams", "echo", size=1024),
    Workload("streams10k", "TCP echo, streams, 10 KiB", "tcp-streams", "echo", size=10 * 1024),
    Workload("streams100k", "TCP echo, streams, 100 KiB", "tcp-streams", "echo", size=100 * 1024),
    Workload("unix1k", "Unix echo, Protocol, 1 KiB", "unix-proto", "echo", proto="unix", size=1024),
    Workload("udp1k", "UDP echo, datagram, 1 KiB", "udp", "echo", proto="udp", size=1024),
    Workload("http-httptools", "HTTP/1.1 httptools Protocol, wrk", "http-httptools", "wrk", floor_http=True, needs="httptools"),
    Workload("http-aiohttp", "HTTP/1.1 aiohttp hello, wrk", "http-aiohttp", "wrk", floor_http=True, needs="aiohttp"),
    Workload("tls1k", "TLS echo, Protocol, 1 KiB", "tls-proto", "echo", size=1024, tls=True),
    Workload("tls10k", "TLS echo, Protocol, 10 KiB", "tls-proto", "echo", size=10 * 1024, tls=True),
    Workload("tls100k", "TLS echo, Protocol, 100 KiB", "tls-proto", "echo", size=100 * 1024, tls=True),
    Workload("tls-streams1k", "TLS echo, streams, 1 KiB", "tls-streams", "echo", size=1024, tls=True),
    Workload("tls-streams10k", "TLS echo, streams, 10 KiB", "tls-streams", "echo", size=10 * 1024, tls=True),
    Workload("tls-streams100k", "TLS echo, streams, 100 KiB", "tls-streams", "echo", size=100 * 1024, tls=True),
    Workload("tls-handshake", "TLS connection: handshake+echo+close", "tls-proto", "handshake", size=16, tls=True),
    Workload("https-httptools", "HTTPS/1.1 httptools Protocol, wrk", "https-httptools", "wrk", floor_http=True, needs="httptools", tls=True),
]
BY_KEY = {w.key: w for w in WORKLOADS}
RSS_KEY = "rss"
# The TLS rows' files, written by make_pki() into the run's temporary directory.
TLS_CA, TLS_CERT, TLS_KEY = "tls-ca.pem", "tls-cert.pem", "tls-key.pem"


def make_pki(tmp: Path) -> None:
    """A throwaway CA (trustme: ECDSA P-256) and a server certificate for 127.0.0.1 / localhost."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(tmp / TLS_CA))
    cert.private_key_pem.write_to_path(str(tmp / TLS_KEY))
    (tmp / TLS_CERT).write_bytes(b"".join(pem.bytes() for pem in cert.cert_chain_pems))


# --- machine facts --------------------------------------------------------------


def cpu_times(cpu: int) -> tuple[float, float]:
    """(busy, steal) seconds of one CPU from /proc/stat: user+nice+system, steal."""
    hz = os.sysconf("SC_CLK_TCK")
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            f = [int(x) for x in line.split()[1:]]
            return (f[0] + f[1] + f[2]) / hz, (f[7] if len(f) > 7 else 0) / hz
    return 0.0, 0.0


def proc_cpu(pid: int) -> float | None:
    """utime + stime of a whole process, seconds."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    f = text[text.rfind(")") + 2 :].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def tool_version(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else None


def facts(args) -> dict:
    wrk = tool_version(["wrk", "--version"])
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "server_cpu": args.server_cpu,
        "client_cpu": args.client_cpu,
        "python": sys.version.split()[0],
        "ferroloop": module_version("ferroloop"),
        "ferroloop_git": git_rev(),
        "uvloop": module_version("uvloop"),
        "httptools": module_version("httptools"),
        "aiohttp": module_version("aiohttp"),
        "wrk": wrk.split(" [")[0] if wrk else None,
        "kernel": os.uname().release,
        "loadavg_start": loadavg(),
    }


# --- processes --------------------------------------------------------------------


def pinned(cpu: int | None):
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


class Server:
    """A benchmark server in its own pinned process; .addr once it is serving."""

    def __init__(self, loop: str, w: Workload, cpu: int | None, tmp: Path, kind: str | None = None):
        kind = kind or w.kind
        self.unix_path = str(tmp / f"{loop}-{kind}.sock") if w.proto == "unix" else None
        if self.unix_path and os.path.exists(self.unix_path):
            os.unlink(self.unix_path)
        if loop == "floor":
            cmd = [str(FLOOR), "--proto", w.proto]
            if w.floor_http:
                cmd.append("--http")
            if w.tls:
                cmd.append("--tls")
        else:
            cmd = [PYTHON.get(loop, sys.executable), str(SERVER), "--loop", "ferroloop" if loop == NOSTATS else loop,
                   "--kind", kind]
        if w.tls:
            cmd += ["--cert", str(tmp / TLS_CERT), "--key", str(tmp / TLS_KEY)]
        if self.unix_path:
            cmd += ["--addr", self.unix_path]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=pinned(cpu),
        )
        self.pid = self.proc.pid
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise RuntimeError(f"server did not start: {self.stderr_tail()}")
        self.addr = json.loads(line)["addr"]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_tail(self) -> str:
        try:
            err = self.proc.stderr.read().decode(errors="replace").strip() if self.proc.poll() is not None else ""
        except (OSError, ValueError):
            err = ""
        return (err.splitlines() or [f"exit {self.proc.returncode}"])[-1]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()
        if self.unix_path and os.path.exists(self.unix_path):
            os.unlink(self.unix_path)


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class Window:
    """Watches both CPUs around a client run: how busy each was with something
    other than our server (CPU 1) or our client (CPU 0), steal time included."""

    def __init__(self, args, server_pid: int):
        self.args, self.pid = args, server_pid

    def __enter__(self):
        a = self.args
        self.t0 = time.monotonic()
        self.s0 = cpu_times(a.server_cpu) if a.server_cpu is not None else None
        self.c0 = cpu_times(a.client_cpu) if a.client_cpu is not None else None
        self.own0, self.kid0 = proc_cpu(self.pid), children_cpu()
        return self

    def __exit__(self, *exc):
        a = self.args
        self.wall = time.monotonic() - self.t0
        self.server_cpu = (proc_cpu(self.pid) or 0) - (self.own0 or 0)
        self.client_cpu = children_cpu() - self.kid0  # the client is the only child reaped meanwhile

        def share(cpu, before, own):
            if cpu is None or self.wall <= 0:
                return None
            busy, steal = cpu_times(cpu)
            return max(0.0, busy - before[0] - own + steal - before[1]) / self.wall

        self.foreign_server = share(a.server_cpu, self.s0, self.server_cpu)
        self.foreign_client = share(a.client_cpu, self.c0, self.client_cpu)
        return False

    def fields(self) -> dict:
        return {"foreign_server": self.foreign_server, "foreign_client": self.foreign_client}


def run_echo(srv: Server, w: Workload, args, tmp: Path) -> dict:
    """loadgen echo (or loadgen handshake: one 'request' = one TLS connection served)."""
    cmd = [
        str(LOADGEN), w.client,
        "--addr", srv.addr,
        "--conns", str(args.conns),
        "--size", str(w.size),
        "--duration", str(args.duration),
        "--warmup", str(args.warmup),
        "--server-pid", str(srv.pid),
    ]  # fmt: skip
    if w.client == "echo":
        cmd += ["--proto", w.proto]
        if w.tls:
            cmd.append("--tls")
    if w.tls:
        cmd += ["--ca", str(tmp / TLS_CA)]
    with Window(args, srv.pid) as win:
        out = subprocess.run(
            cmd, capture_output=True, text=True, preexec_fn=pinned(args.client_cpu), timeout=args.duration + 60
        )
    if out.returncode != 0:
        raise RuntimeError("loadgen: " + (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1])
    r = json.loads(out.stdout)
    if not r["requests"] or r["server_cpu"] is None:
        raise RuntimeError("loadgen completed no request")
    return {
        "rps": r["rps"],
        "requests": r["requests"],
        "seconds": r["seconds"],
        "server_cpu_s": r["server_cpu"],
        "cpu_us_per_req": r["server_cpu"] / r["requests"] * 1e6,
        "server_busy": r["server_cpu"] / r["seconds"],
        "client_busy": r["client_cpu"] / r["seconds"],
        "udp_resends": r["resends"],
        **win.fields(),
    }


WRK_RPS = re.compile(r"(\d+) requests in ([\d.]+)(m?s)")


def run_wrk(srv: Server, w: Workload, args, duration: float) -> dict:
    scheme = "https" if w.tls else "http"
    cmd = ["wrk", "-t1", f"-c{args.wrk_conns}", f"-d{duration}s", "--timeout", "5s", f"{scheme}://{srv.addr}/"]
    with Window(args, srv.pid) as win:
        out = subprocess.run(
            cmd, capture_output=True, text=True, preexec_fn=pinned(args.client_cpu), timeout=duration + 60
        )
    if out.returncode != 0:
        raise RuntimeError("wrk: " + (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1])
    m = WRK_RPS.search(out.stdout)
    if not m:
        raise RuntimeError("wrk: no result in its output")
    if "Non-2xx" in out.stdout or "Socket errors" in out.stdout:
        bad = [ln.strip() for ln in out.stdout.splitlines() if "Non-2xx" in ln or "Socket errors" in ln]
        raise RuntimeError("wrk: " + "; ".join(bad))
    requests = int(m.group(1))
    secs = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
    return {
        "rps": requests / secs,
        "requests": requests,
        "seconds": secs,
        "server_cpu_s": win.server_cpu,
        "cpu_us_per_req": win.server_cpu / requests * 1e6 if requests else None,
        "server_busy": win.server_cpu / win.wall,
        "client_busy": win.client_cpu / win.wall,
        **win.fields(),
    }


def run_cell(loop: str, w: Workload, args, tmp: Path) -> dict:
    srv = Server(loop, w, args.server_cpu, tmp)
    try:
        if w.client in ("echo", "handshake"):
            res = run_echo(srv, w, args, tmp)
        else:
            run_wrk(srv, w, args, args.warmup_wrk)  # warm-up, not reported
            res = run_wrk(srv, w, args, args.wrk_duration)
        if not srv.alive():
            raise RuntimeError("server died: " + srv.stderr_tail())
        return res
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        died = not srv.alive()
        if not died:  # still serving: stop it to see whether it logged anything (an exception handler's report)
            srv.proc.kill()
            srv.proc.wait()
        tail = srv.stderr_tail()
        if died or not tail.startswith("exit "):
            e = RuntimeError(f"{e} (server{' died' if died else ''}: {tail})")
        raise RuntimeError(str(e)) from None
    finally:
        srv.stop()


def run_rss(loop: str, args, tmp: Path) -> dict:
    """RSS of an echo server before and while it holds args.rss_conns idle TCP connections."""
    w = BY_KEY["tcp1k"]
    srv = Server(loop, w, args.server_cpu, tmp)
    try:
        time.sleep(0.3)
        rss0 = proc_status_kib(srv.pid, "VmRSS")
        cpu0 = proc_cpu(srv.pid)
        client = subprocess.Popen(
            [str(LOADGEN), "hold", "--addr", srv.addr, "--conns", str(args.rss_conns)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=pinned(args.client_cpu),
        )
        try:
            ready, _, _ = select.select([client.stdout], [], [], 150)
            line = client.stdout.readline() if ready else b""
            if not line:
                client.kill()
                err = client.stderr.read().decode(errors="replace").strip()
                raise RuntimeError("loadgen hold: " + ((err.splitlines() or ["no answer"])[-1]))
            held = json.loads(line)
            time.sleep(0.5)  # let the server settle (late callbacks, allocator)
            cpu1 = proc_cpu(srv.pid)
            rss1 = proc_status_kib(srv.pid, "VmRSS")
            fds = len(os.listdir(f"/proc/{srv.pid}/fd"))
        finally:
            if client.poll() is None:
                client.stdin.close()
                try:
                    client.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    client.kill()
                    client.wait()
        if not srv.alive():
            raise RuntimeError("server died: " + srv.stderr_tail())
        n = held["connected"]
        return {
            "conns": n,
            "rss_before_kib": rss0,
            "rss_holding_kib": rss1,
            "kib_per_conn": (rss1 - rss0) / n,
            "server_fds": fds,
            "connect_seconds": held["seconds"],
            "cpu_us_per_conn": ((cpu1 or 0) - (cpu0 or 0)) / n * 1e6,
        }
    finally:
        srv.stop()


# --- formatting -------------------------------------------------------------------


def fmt_num(x: float | None, unit: str = "") -> str:
    if x is None:
        return "n/a"
    if x >= 100:
        return f"{x:,.0f}{unit}"
    if x >= 10:
        return f"{x:.1f}{unit}"
    return f"{x:.2f}{unit}"


def fmt_ratio(num: float | None, den: float | None) -> str:
    if not num or not den:
        return "n/a"
    return f"{num / den:.2f}x"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    keys = [w.key for w in WORKLOADS] + [RSS_KEY]
    ap.add_argument("--only", nargs="+", choices=keys, help="run only these workloads")
    ap.add_argument("--loops", nargs="+", choices=LOOPS, default=LOOPS)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds (fresh servers) [2]")
    ap.add_argument("--duration", type=float, default=3.0, help="measured seconds per echo cell [3]")
    ap.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before it [0.5]")
    ap.add_argument("--wrk-duration", type=int, default=5, help="measured seconds per wrk cell [5]")
    ap.add_argument("--warmup-wrk", type=int, default=1, help="unmeasured wrk run before it [1]")
    ap.add_argument("--conns", type=int, default=10, help="echo connections (sockets for UDP) [10]")
    ap.add_argument("--wrk-conns", type=int, default=50, help="wrk connections [50]")
    ap.add_argument("--rss-conns", type=int, default=10_000, help="idle connections for the RSS row [10000]")
    ap.add_argument("--quick", action="store_true", help="1 s windows, 2 s wrk, one round, 2,000 idle conns")
    ap.add_argument("--server-cpu", type=int, default=1, help="CPU the servers are pinned to [1]")
    ap.add_argument("--client-cpu", type=int, default=0, help="CPU the clients are pinned to [0]")
    ap.add_argument("--no-pin", action="store_true", help="pin nothing")
    ap.add_argument("--json", type=Path, default=None, help="result file [.bench-results/net-<date>.json]")
    ap.add_argument("--no-json", action="store_true")
    ap.add_argument("--nostats", metavar="PYTHON", help="add a column: ferroloop from this no-stats build's python")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 1.0, 0.3
        args.wrk_duration, args.warmup_wrk, args.rss_conns = 2, 1, 2000
    if args.no_pin:
        args.server_cpu = args.client_cpu = None

    if not (LOADGEN.exists() and FLOOR.exists()):
        print(
            "benches/loadgen is not built: cargo build --release --manifest-path benches/loadgen/Cargo.toml",
            file=sys.stderr,
        )
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by servers and clients
    if args.rss_conns + 64 > hard:
        print(f"note: RLIMIT_NOFILE hard limit is {hard}; idle connections lowered to {hard - 64}", file=sys.stderr)
        args.rss_conns = hard - 64

    info = facts(args)
    loops = list(args.loops)
    if args.nostats:
        PYTHON[NOSTATS] = args.nostats
        loops.append(NOSTATS)
    missing = {"uvloop": info["uvloop"] is None}
    skip_reason: dict[tuple[str, str], str] = {}
    rows = [w for w in WORKLOADS if not args.only or w.key in args.only]
    do_rss = not args.only or RSS_KEY in args.only
    info["trustme"] = module_version("trustme")
    for w in rows:
        for lp in loops:
            if w.tls and info["trustme"] is None:
                skip_reason[(w.key, lp)] = "trustme not installed (the TLS rows' certificates)"
            elif lp == "uvloop" and missing["uvloop"]:
                skip_reason[(w.key, lp)] = "uvloop not installed"
            elif w.needs and lp != "floor" and info.get(w.needs) is None:
                skip_reason[(w.key, lp)] = f"{w.needs} not installed"
            elif w.client == "wrk" and info["wrk"] is None:
                skip_reason[(w.key, lp)] = "wrk not installed"
    for reason in sorted(set(skip_reason.values())):
        print(f"note: {reason}: those cells show n/a", file=sys.stderr)

    samples: dict[str, dict[str, list[dict]]] = {}
    errors: list[str] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ferroloop-net-") as tmpdir:
        tmp = Path(tmpdir)
        if any(w.tls for w in rows) and info["trustme"] is not None:
            make_pki(tmp)
        for w in rows:
            cell = samples.setdefault(w.key, {})
            print(f"  {w.key} ...", end="", flush=True, file=sys.stderr)
            for _ in range(args.rounds):
                for lp in loops:
                    if (w.key, lp) in skip_reason:
                        continue
                    try:
                        cell.setdefault(lp, []).append(run_cell(lp, w, args, tmp))
                    except RuntimeError as e:
                        errors.append(f"{w.key} on {lp}: {e}")
                        cell.setdefault(lp, []).append({"error": str(e)})
            print(f" {time.monotonic() - started:.0f} s so far", file=sys.stderr)
        rss: dict[str, dict] = {}
        if do_rss:
            print(f"  {RSS_KEY} ({args.rss_conns:,} idle connections) ...", end="", flush=True, file=sys.stderr)
            for lp in loops:
                if lp == "uvloop" and missing["uvloop"]:
                    continue
                try:
                    rss[lp] = run_rss(lp, args, tmp)
                except RuntimeError as e:
                    errors.append(f"{RSS_KEY} on {lp}: {e}")
                    rss[lp] = {"error": str(e)}
            print(f" {time.monotonic() - started:.0f} s so far", file=sys.stderr)
    info["loadavg_end"] = loadavg()
    info["wall_seconds"] = round(time.monotonic() - started, 1)

    # --- aggregate: best round on CPU/request, best round on requests/s ---------
    def good(lp_samples: list[dict]) -> list[dict]:
        return [s for s in lp_samples if "error" not in s and s.get("cpu_us_per_req")]

    summary: dict[str, dict[str, dict]] = {}
    for w in rows:
        for lp in loops:
            ok = good(samples.get(w.key, {}).get(lp, []))
            if not ok:
                summary.setdefault(w.key, {})[lp] = {}
                continue
            cpus = [s["cpu_us_per_req"] for s in ok]
            best = min(ok, key=lambda s: s["cpu_us_per_req"])
            foreign = [
                max(s.get("foreign_server") or 0.0, s.get("foreign_client") or 0.0) for s in ok
            ]
            summary.setdefault(w.key, {})[lp] = {
                "cpu_us_per_req": min(cpus),
                "cpu_us_per_req_median": statistics.median(cpus),
                "noisy": max(cpus) > min(cpus) * (1 + NOISY),
                "rps": max(s["rps"] for s in ok),
                "server_busy": best["server_busy"],
                "client_busy": best.get("client_busy"),
                "contended": bool(foreign) and min(foreign) > FOREIGN,
                "foreign_max": max(foreign) if foreign else None,
            }

    # --- print ------------------------------------------------------------------
    def cols(lps):
        return [lp for lp in lps if lp in loops]

    print()
    print(
        f"ferroloop {info['ferroloop']} ({info['ferroloop_git']}), uvloop {info['uvloop'] or 'not installed'}, "
        f"CPython {info['python']}, httptools {info['httptools'] or 'n/a'}, aiohttp {info['aiohttp'] or 'n/a'}, "
        f"{info['wrk'] or 'no wrk'}"
    )
    pin = (
        f"servers pinned to CPU {args.server_cpu}, clients to CPU {args.client_cpu}"
        if args.server_cpu is not None
        else "not pinned"
    )
    print(f"{info['cpu_model']}, {info['cpu_count']} CPUs, {pin}; Linux {info['kernel']}; {info['date']}")
    print(
        f"load average {info['loadavg_start']} at start, {info['loadavg_end']} at end; "
        f"{info['wall_seconds']:.0f} s in all"
    )
    print(
        f"echo: {args.conns} connections in ping-pong, {args.duration:g} s measured after {args.warmup:g} s warm-up; "
        f"HTTP: wrk -t1 -c{args.wrk_conns} -d{args.wrk_duration}s after a {args.warmup_wrk} s warm-up; "
        f"best of {args.rounds} round(s), fresh server each"
    )
    if any(w.tls for w in rows):
        print(
            f"TLS: servers ssl.create_default_context(Purpose.CLIENT_AUTH) + a trustme ECDSA P-256 certificate, "
            f"the same on every loop ({ssl.OPENSSL_VERSION}; the floor: rustls); clients: loadgen on rustls (ring), "
            f"wrk on OpenSSL; TLS 1.3, the handshake row without session resumption"
        )

    if rows:
        width = max(len(w.title) for w in rows) + 2
        print()
        print("Server CPU time per request, microseconds (LOWER is better)")
        head = f"{'workload':<{width}}" + "".join(f"{LOOP_TITLE[lp]:>12}" for lp in loops)
        ratio_cols = [(f"f/{LOOP_TITLE[lp].split()[-1].replace('-', '')}", lp) for lp in ("uvloop", "asyncio", "floor", NOSTATS) if lp in loops]
        if "ferroloop" in loops:
            head += "".join(f"{h:>10}" for h, _ in ratio_cols)
        print(head)
        print("-" * len(head))
        for w in rows:
            line = f"{w.title:<{width}}"
            for lp in loops:
                s = summary[w.key].get(lp, {})
                mark = ("~" if s.get("noisy") else "") + ("!" if s.get("contended") else "")
                line += f"{fmt_num(s.get('cpu_us_per_req')) + mark:>12}" if s else f"{'n/a':>12}"
            if "ferroloop" in loops:
                ferro = summary[w.key].get("ferroloop", {}).get("cpu_us_per_req")
                for _, lp in ratio_cols:
                    line += f"{fmt_ratio(ferro, summary[w.key].get(lp, {}).get('cpu_us_per_req')):>10}"
            print(line)
        print()
        print("Requests per second (server CPU busy / client CPU busy, share of the window)")
        head = f"{'workload':<{width}}" + "".join(f"{LOOP_TITLE[lp]:>21}" for lp in loops)
        print(head)
        print("-" * len(head))
        for w in rows:
            line = f"{w.title:<{width}}"
            for lp in loops:
                s = summary[w.key].get(lp, {})
                if s:
                    cli = s.get("client_busy")
                    cell = f"{s['rps']:,.0f} ({s['server_busy']:.0%}/{cli:.0%})" if cli is not None else f"{s['rps']:,.0f}"
                else:
                    cell = "n/a"
                line += f"{cell:>21}"
            print(line)

    if do_rss and rss:
        n = next((r["conns"] for r in rss.values() if "conns" in r), args.rss_conns)
        print()
        print(f"Server memory holding {n:,} idle TCP connections (echo Protocol server; LOWER is better)")
        head = f"{'':<34}" + "".join(f"{LOOP_TITLE[lp]:>12}" for lp in loops if lp in rss)
        if "ferroloop" in rss and "uvloop" in rss:
            head += f"{'f/uvloop':>10}"
        print(head)
        print("-" * len(head))
        for label, key, scale, ratio in (
            ("RSS before connecting, MiB", "rss_before_kib", 1 / 1024, False),
            ("RSS holding them, MiB", "rss_holding_kib", 1 / 1024, True),
            ("RSS per connection, KiB", "kib_per_conn", 1, True),
            ("server CPU per accept+echo, us", "cpu_us_per_conn", 1, True),
        ):
            line = f"{label:<34}"
            for lp in loops:
                if lp in rss:
                    v = rss[lp].get(key)
                    line += f"{fmt_num(v * scale if v is not None else None):>12}"
            if ratio and "ferroloop" in rss and "uvloop" in rss:
                line += f"{fmt_ratio(rss['ferroloop'].get(key), rss['uvloop'].get(key)):>10}"
            print(line)

    print()
    notes = [
        "f/uvloop, f/asyncio, f/floor = ferroloop's figure / the other's: BELOW 1.00x ferroloop uses less CPU "
        "(or memory) than that loop, above 1.00x it uses more. (benches/run.py's time ratios point the other "
        "way: there above 1.00x is faster.)",
        "CPU per request = the server process's utime+stime over the measured window / requests completed in it. "
        "It is the fair figure when the server is not saturated: requests/s then tells more about the client "
        "and the wake-up latency between the two CPUs than about the loop.",
        f"~ = its rounds are more than {NOISY:.0%} apart (noisy: run it again with --only KEY --rounds 3); "
        f"! = other processes (or the hypervisor) took more than {FOREIGN:.0%} of the server's or the client's "
        "CPU during the window, in every round: its numbers are suspect, run it again on a quiet machine.",
    ]
    if NOSTATS in loops:
        notes.insert(
            1,
            f"no-stats = ferroloop built with --features no-stats ({PYTHON[NOSTATS]}); f/no-stats above 1.00x "
            "is what always-on loop.stats() costs per request.",
        )
    if any(w.client == "handshake" for w in rows):
        notes.insert(
            2,
            "TLS connection row: one 'request' is a whole TLS connection (TCP connect, full handshake, a 16-byte "
            "echo, close_notify both ways, close); its requests/s is TLS connections per second.",
        )
    for note in notes:
        print(textwrap.fill(note, width=110, subsequent_indent="  "))

    if not args.no_json:
        path = args.json or ROOT / ".bench-results" / f"net-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        settings = ("rounds", "duration", "warmup", "wrk_duration", "warmup_wrk", "conns", "wrk_conns", "rss_conns", "loops")
        doc = {
            "facts": info,
            "settings": {k: getattr(args, k) for k in settings},
            "results": [
                {"workload": w.key, "title": w.title, "summary": summary[w.key], "samples": samples[w.key]}
                for w in rows
            ],
            "rss": rss if do_rss else None,
        }
        path.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"results written to {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")

    if errors:
        print("\nPROBLEMS (not timing related):", file=sys.stderr)
        for e in errors:
            print("  " + e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
