#!/usr/bin/env python3
"""Open many MySQL-protocol client connections, log them in, keep them idle,
and measure the resident memory of a server process meanwhile.

Standard library only: the mysql_native_password login is written by hand
(handshake v10 -> HandshakeResponse41 with CLIENT_PROTOCOL_41 |
CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH, token = SHA1(pw) XOR
SHA1(scramble20 + SHA1(SHA1(pw))) -> OK), including an AuthSwitchRequest to
mysql_native_password.

  idle_conns.py --port 6033 --user bench.acme --password bench-pass \
      --count 5000 --watch silo=<pid> [--watch mariadbd=<pid>] \
      [--probe-cmd 'shell command']

Steps: read VmRSS of each --watch process (and run --probe-cmd), open --count connections
in batches of --batch (connect all of a batch, then answer all handshakes,
then read all results), wait --settle seconds, read VmRSS again (and the
probe), send COM_PING on a few connections to show they are still usable,
then COM_QUIT and close them all. Prints human-readable lines and, for
scripts, lines "RESULT key=value". Every wait is bounded by --timeout
(per socket operation) and --deadline (whole login phase). Exits 1 if not
every connection logged in.
"""

import argparse
import hashlib
import os
import resource
import socket
import struct
import subprocess
import sys
import time

CLIENT_LONG_PASSWORD = 0x00000001
CLIENT_CONNECT_WITH_DB = 0x00000008
CLIENT_PROTOCOL_41 = 0x00000200
CLIENT_TRANSACTIONS = 0x00002000
CLIENT_SECURE_CONNECTION = 0x00008000
CLIENT_PLUGIN_AUTH = 0x00080000

COM_QUIT = 0x01
COM_PING = 0x0E
UTF8MB4_GENERAL_CI = 45
NATIVE = b"mysql_native_password"


class LoginError(Exception):
    pass


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise LoginError("connection closed by server")
        buf += chunk
    return bytes(buf)


def read_packet(sock):
    header = recv_exact(sock, 4)
    length = header[0] | (header[1] << 8) | (header[2] << 16)
    return header[3], recv_exact(sock, length)


def write_packet(sock, seq, payload):
    n = len(payload)
    sock.sendall(bytes((n & 0xFF, (n >> 8) & 0xFF, (n >> 16) & 0xFF, seq & 0xFF)) + payload)


def err_text(p):
    # ERR: 0xff, code u16, '#', sqlstate(5), message
    code = struct.unpack_from("<H", p, 1)[0] if len(p) >= 3 else 0
    if len(p) > 9 and p[3:4] == b"#":
        return f"ERROR {code} ({p[4:9].decode()}): {p[9:].decode(errors='replace')}"
    return f"ERROR {code}: {p[3:].decode(errors='replace')}"


def native_token(password, scramble):
    if not password:
        return b""
    h1 = hashlib.sha1(password).digest()
    h2 = hashlib.sha1(h1).digest()
    h3 = hashlib.sha1(scramble + h2).digest()
    return bytes(a ^ b for a, b in zip(h1, h3))


def parse_handshake(p):
    if p[:1] == b"\xff":
        raise LoginError("server refused the connection: " + err_text(p))
    if p[0] != 10:
        raise LoginError(f"unexpected handshake protocol version {p[0]}")
    i = p.index(b"\0", 1) + 1  # server version
    i += 4  # connection id
    part1 = p[i:i + 8]
    i += 8 + 1  # auth-plugin-data part 1, filler
    caps = struct.unpack_from("<H", p, i)[0]
    i += 2
    auth_len = 0
    part2 = b""
    plugin = NATIVE
    if len(p) > i:
        i += 1 + 2  # charset, status flags
        caps |= struct.unpack_from("<H", p, i)[0] << 16
        i += 2
        auth_len = p[i]
        i += 1 + 10  # auth data length, reserved (MariaDB: 6 + 4 ext caps)
        if caps & CLIENT_SECURE_CONNECTION:
            n2 = max(13, auth_len - 8)
            part2 = p[i:i + n2]
            i += n2
        if caps & CLIENT_PLUGIN_AUTH:
            end = p.find(b"\0", i)
            plugin = p[i:] if end < 0 else p[i:end]
    # 8 + 12 bytes of scramble; part 2 carries a trailing NUL.
    return caps, (part1 + part2)[:20], plugin


def start_login(sock, user, password, database):
    """Read the greeting and send the HandshakeResponse41. Returns the
    sequence id expected next."""
    seq, p = read_packet(sock)
    server_caps, scramble, plugin = parse_handshake(p)
    need = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH
    if server_caps & need != need:
        raise LoginError(f"server lacks PROTOCOL_41/SECURE_CONNECTION/PLUGIN_AUTH (caps {server_caps:#x})")
    caps = need | (server_caps & (CLIENT_LONG_PASSWORD | CLIENT_TRANSACTIONS))
    if database:
        caps |= CLIENT_CONNECT_WITH_DB
    # Answer with mysql_native_password whatever the server proposed; a
    # server that wants another plugin answers with an AuthSwitchRequest.
    del plugin
    token = native_token(password, scramble)
    payload = struct.pack("<IIB23x", caps, 16 * 1024 * 1024, UTF8MB4_GENERAL_CI)
    payload += user + b"\0" + bytes((len(token),)) + token
    if database:
        payload += database + b"\0"
    payload += NATIVE + b"\0"
    write_packet(sock, seq + 1, payload)
    return seq + 2


def finish_login(sock, password, seq):
    for _ in range(4):
        rseq, p = read_packet(sock)
        if not p:
            raise LoginError("empty packet during login")
        if p[0] == 0x00:
            return
        if p[0] == 0xFF:
            raise LoginError(err_text(p))
        if p[0] == 0xFE:
            end = p.find(b"\0", 1)
            plugin = p[1:end] if end >= 0 else p[1:]
            data = p[end + 1:] if end >= 0 else b""
            if plugin != NATIVE:
                raise LoginError(f"server asked for auth plugin {plugin.decode(errors='replace')}; "
                                 "this client speaks mysql_native_password only")
            write_packet(sock, rseq + 1, native_token(password, data.rstrip(b"\0")[:20]))
            continue
        raise LoginError(f"unexpected packet 0x{p[0]:02x} during login "
                         "(caching_sha2_password? this client speaks mysql_native_password only)")
    raise LoginError("too many authentication round trips")


def vm_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "RssAnon", "VmHWM", "Threads"):
                    out[k] = int(v.split()[0])
    except OSError as e:
        raise SystemExit(f"cannot read /proc/{pid}/status: {e}")
    return out


def listen_overflows():
    """TcpExt ListenOverflows from /proc/net/netstat (machine-wide): each one
    is a connection dropped because a listen queue was full; the client's
    SYN is retried after about 1 s."""
    try:
        with open("/proc/net/netstat", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:]))
            v = table.get("ListenOverflows")
            return int(v) if v is not None else None
    return None


def probe(cmd):
    if not cmd:
        return None
    try:
        r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30)
        return r.stdout.strip() or r.stderr.strip()
    except subprocess.TimeoutExpired:
        return "probe timed out"


def raise_fd_limit(need):
    # The equivalent of `ulimit -n 65536`, capped at the hard limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        raise SystemExit(f"open-file limit {soft} is below the {need} this run needs "
                         f"(hard limit {hard}); lower --count or raise the limit")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", default="")
    ap.add_argument("--database", default="")
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--watch", action="append", required=True, metavar="NAME=PID",
                    help="process whose VmRSS is measured (repeatable)")
    ap.add_argument("--probe-cmd", default="", help="shell command run before and after (e.g. backend thread count)")
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--timeout", type=float, default=15.0, help="per socket operation, seconds")
    ap.add_argument("--deadline", type=float, default=180.0, help="whole login phase, seconds")
    ap.add_argument("--ping", type=int, default=10, help="COM_PING this many connections at the end")
    a = ap.parse_args()
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("refusing a non-loopback target: this is a local benchmark")
    if not 0 < a.count <= 60000 or not 0 < a.batch <= 5000:
        raise SystemExit("--count must be 1..60000 and --batch 1..5000")
    raise_fd_limit(a.count + 64)

    user = a.user.encode()
    password = a.password.encode()
    database = a.database.encode()

    watch = []
    for w in a.watch:
        name, _, pid = w.partition("=")
        if not name or not pid.isdigit():
            raise SystemExit(f"--watch wants NAME=PID, got {w!r}")
        watch.append((name, int(pid)))

    before = {name: vm_status(pid) for name, pid in watch}
    probe_before = probe(a.probe_cmd)
    for name, _ in watch:
        print(f"{name} before: VmRSS {before[name].get('VmRSS')} KiB, threads {before[name].get('Threads')}",
              flush=True)
    if probe_before is not None:
        print(f"probe before: {probe_before}", flush=True)

    socks = []
    failures = 0
    first_error = None
    overflows_before = listen_overflows()
    t0 = time.monotonic()
    deadline = t0 + a.deadline
    try:
        while len(socks) < a.count:
            if time.monotonic() > deadline:
                first_error = first_error or f"deadline of {a.deadline:.0f} s reached"
                break
            n = min(a.batch, a.count - len(socks))
            batch = []
            for _ in range(n):
                s = socket.socket(socket.AF_INET6 if ":" in a.host else socket.AF_INET, socket.SOCK_STREAM)
                s.settimeout(a.timeout)
                try:
                    s.connect((a.host, a.port))
                    batch.append([s, None])
                except OSError as e:
                    s.close()
                    failures += 1
                    first_error = first_error or f"connect: {e}"
            for item in batch:  # handshakes already wait in the socket buffers
                try:
                    item[1] = start_login(item[0], user, password, database)
                except (OSError, LoginError, ValueError, IndexError, struct.error) as e:
                    failures += 1
                    first_error = first_error or f"handshake: {e}"
            for s, seq in batch:
                if seq is None:
                    s.close()
                    continue
                try:
                    finish_login(s, password, seq)
                    socks.append(s)
                except (OSError, LoginError, ValueError, IndexError, struct.error) as e:
                    s.close()
                    failures += 1
                    first_error = first_error or f"login: {e}"
            if failures and not socks:
                break  # nothing works: stop at the first batch
            if failures > a.count // 100 + 10:
                break
        login_s = time.monotonic() - t0
        overflows = None
        if overflows_before is not None and listen_overflows() is not None:
            overflows = listen_overflows() - overflows_before
        print(f"logged in {len(socks)}/{a.count} connections in {login_s:.1f} s "
              f"(batches of {a.batch} connects)"
              + (f"; {failures} failed, first error: {first_error}" if failures or first_error else ""),
              flush=True)
        if overflows:
            print(f"  listen-queue overflows meanwhile: {overflows} (connections dropped because the "
                  "server's accept backlog was full; each client retries its SYN after ~1 s, which "
                  "is what makes the logins slow)", flush=True)

        time.sleep(a.settle)
        after = {name: vm_status(pid) for name, pid in watch}
        probe_after = probe(a.probe_cmd)
        results = []
        for name, _ in watch:
            b, f = before[name], after[name]
            delta = f.get("VmRSS", 0) - b.get("VmRSS", 0)
            per = delta / len(socks) if socks else float("nan")
            results.append((name, b, f, delta, per))
            print(f"{name} after:  VmRSS {f.get('VmRSS')} KiB, threads {f.get('Threads')}: "
                  f"+{delta} KiB for {len(socks)} idle connections = {per:.1f} KiB per connection",
                  flush=True)
        if probe_after is not None:
            print(f"probe after: {probe_after}", flush=True)

        pinged = 0
        for s in socks[:a.ping]:
            try:
                write_packet(s, 0, bytes((COM_PING,)))
                _, p = read_packet(s)
                if p[:1] == b"\x00":
                    pinged += 1
                else:
                    first_error = first_error or "ping: " + (err_text(p) if p[:1] == b"\xff" else repr(p[:16]))
            except (OSError, LoginError) as e:
                first_error = first_error or f"ping: {e}"
        print(f"COM_PING answered OK on {pinged}/{min(a.ping, len(socks))} of the idle connections", flush=True)

        for name, b, f, delta, per in results:
            print(f"RESULT name={name} connections={len(socks)} requested={a.count} failures={failures} "
                  f"rss_before_kib={b.get('VmRSS')} rss_after_kib={f.get('VmRSS')} "
                  f"delta_kib={delta} kib_per_conn={per:.2f} threads_before={b.get('Threads')} "
                  f"threads_after={f.get('Threads')} login_seconds={login_s:.2f} "
                  f"listen_overflows={overflows if overflows is not None else '-'} pinged={pinged}",
                  flush=True)
        if probe_before is not None:
            print(f"RESULT_PROBE before={probe_before!r} after={probe_after!r}", flush=True)
    finally:
        for s in socks:
            try:
                s.settimeout(0.5)
                write_packet(s, 0, bytes((COM_QUIT,)))
            except OSError:
                pass
            s.close()
    return 0 if len(socks) == a.count else 1


if __name__ == "__main__":
    sys.exit(main())
