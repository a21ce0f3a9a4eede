#!/usr/bin/env python3
"""Server ceiling probe: a minimal plaintext TDS 7.4 client (PRELOGIN, LOGIN7, SQL_BATCH) that
reads the response packets of a query and throws them away without decoding any row.

The time it takes is the server's cost of producing the result (plus loopback TCP), i.e. an upper
bound on the rows/s any client can reach against this server. Rows are taken from the final DONE
token's row count. Prints one JSON line like the other baselines (bytes = TDS bytes received).
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import connection_parser, report  # noqa: E402

PRELOGIN, LOGIN7, SQL_BATCH = 0x12, 0x10, 0x01


def send_msg(sock: socket.socket, ptype: int, payload: bytes, packet_size: int) -> None:
    room = packet_size - 8
    chunks = [payload[i : i + room] for i in range(0, len(payload), room)] or [b""]
    for n, c in enumerate(chunks):
        status = 0x01 if n == len(chunks) - 1 else 0x00
        sock.sendall(struct.pack(">BBHHBB", ptype, status, len(c) + 8, 0, (n + 1) & 0xFF, 0) + c)


def recv_exact(sock: socket.socket, buf: memoryview, n: int) -> None:
    got = 0
    while got < n:
        k = sock.recv_into(buf[got:n], n - got)
        if k == 0:
            raise ConnectionError("server closed the connection")
        got += k


def read_msg(sock: socket.socket, keep_tail: int = 64) -> tuple[int, bytes]:
    """Read one response message; return (bytes received, last keep_tail payload bytes)."""
    hdr = bytearray(8)
    body = bytearray(65536)
    total = 0
    tail = b""
    while True:
        recv_exact(sock, memoryview(hdr), 8)
        status, length = hdr[1], struct.unpack(">H", hdr[2:4])[0]
        recv_exact(sock, memoryview(body), length - 8)
        total += length
        tail = (tail + bytes(body[: length - 8]))[-keep_tail:]
        if status & 0x01:
            return total, tail


def prelogin() -> bytes:
    # VERSION, ENCRYPTION(=NOT_SUP), TERMINATOR
    opts = [(0x00, b"\x0f\x00\x07\xd0\x00\x00"), (0x01, b"\x02")]
    off = len(opts) * 5 + 1
    head, data = b"", b""
    for tok, val in opts:
        head += struct.pack(">BHH", tok, off + len(data), len(val))
        data += val
    return head + b"\xff" + data


def login7(user: str, password: str, database: str, packet_size: int) -> bytes:
    def ucs2(s: str) -> bytes:
        return s.encode("utf-16-le")

    def scramble(s: str) -> bytes:
        return bytes((((b << 4) & 0xF0) | (b >> 4)) ^ 0xA5 for b in ucs2(s))

    fields = [ucs2("bench"), ucs2(user), scramble(password), ucs2("raw_tds_read"), ucs2("127.0.0.1"),
              b"", ucs2("raw_tds_read"), b"", ucs2(database)]
    fixed = struct.pack("<IIIIII", 0, 0x74000004, packet_size, 7, os.getpid(), 0)
    fixed += bytes([0xE0, 0x03, 0x00, 0x00]) + struct.pack("<iI", 0, 0x409)
    offsets, data = b"", b""
    base = 94
    for f in fields:
        offsets += struct.pack("<HH", base + len(data), len(f) // 2 if f else 0)
        data += f
    offsets += b"\x00" * 6  # ClientID
    offsets += struct.pack("<HH", base + len(data), 0)  # SSPI
    offsets += struct.pack("<HH", base + len(data), 0)  # AtchDBFile
    offsets += struct.pack("<HH", base + len(data), 0)  # ChangePassword
    offsets += struct.pack("<I", 0)  # cbSSPILong
    msg = fixed + offsets + data
    assert len(fixed + offsets) == 94
    return struct.pack("<I", len(msg)) + msg[4:]


def sql_batch(sql: str) -> bytes:
    # ALL_HEADERS with one transaction descriptor header (required from TDS 7.2 on)
    txn = struct.pack("<IHQI", 18, 2, 0, 1)
    return struct.pack("<I", 4 + len(txn)) + txn + sql.encode("utf-16-le")


def main() -> None:
    p = connection_parser(__doc__)
    p.add_argument("--query", default="SELECT * FROM bench")
    p.add_argument("--packet-size", type=int, default=4096, help="requested in LOGIN7 (clients default to 4096)")
    a = p.parse_args()

    sock = socket.create_connection((a.host, a.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    send_msg(sock, PRELOGIN, prelogin(), 4096)
    read_msg(sock)
    send_msg(sock, LOGIN7, login7(a.user, a.password, a.database, a.packet_size), 4096)
    _, resp = read_msg(sock, keep_tail=8192)
    if 0xAD not in resp:  # no LOGINACK token
        raise SystemExit("login failed")
    t0 = time.perf_counter()
    send_msg(sock, SQL_BATCH, sql_batch(a.query), a.packet_size)
    nbytes, tail = read_msg(sock)
    seconds = time.perf_counter() - t0
    sock.close()
    # final token: DONE (0xFD) status u16, curcmd u16, rowcount u64
    tok, status, _cmd, rows = struct.unpack("<BHHQ", tail[-13:])
    if tok != 0xFD or status & 0x02:
        raise SystemExit(f"query failed (last token {tok:#x}, status {status:#x})")
    report(tool=f"raw-tds(packet {a.packet_size})", rows=rows, seconds=round(seconds, 3), bytes=nbytes)


if __name__ == "__main__":
    main()
