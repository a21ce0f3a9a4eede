"""Record a TDS session once, then replay the server's side from memory, so that a client's read
speed can be measured without the (SQLite-backed, slower than the clients) test server in the way.

    python replay.py record LISTEN_PORT SERVER_PORT FILE   # proxy: records one client session
    python replay.py serve  LISTEN_PORT FILE               # answers every connection from FILE

A session is request/response: the client sends a message (packets until the EOM status bit),
the server answers with one message. `record` forwards one connection and stores the server's
answers in order; `serve` reads each client message and sends the next stored answer (whatever
the client asked: run the same client and query that were recorded). Plaintext TDS only (the test
server has no TLS).
"""

import pickle
import socket
import sys
import threading


def read_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def read_message(s: socket.socket) -> bytes:
    """Packets until one with the EOM bit, headers included."""
    out = bytearray()
    while True:
        header = read_exact(s, 8)
        length = int.from_bytes(header[2:4], "big")
        out += header + read_exact(s, length - 8)
        if header[1] & 0x01:
            return bytes(out)


def record(listen: int, upstream: int, path: str) -> None:
    ls = socket.create_server(("127.0.0.1", listen))
    client, _ = ls.accept()
    server = socket.create_connection(("127.0.0.1", upstream))
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    answers = []
    try:
        while True:
            server.sendall(read_message(client))
            answer = read_message(server)
            client.sendall(answer)
            answers.append(answer)
    except (EOFError, ConnectionError):
        pass
    with open(path, "wb") as f:
        pickle.dump(answers, f)
    print(f"recorded {len(answers)} answers, {sum(map(len, answers))} bytes -> {path}")


def serve(listen: int, path: str) -> None:
    with open(path, "rb") as f:
        answers = pickle.load(f)
    ls = socket.create_server(("127.0.0.1", listen))
    print(f"replaying {len(answers)} answers ({sum(map(len, answers))} bytes) on {listen}", flush=True)

    def session(c: socket.socket) -> None:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for answer in answers:
                read_message(c)
                c.sendall(answer)
            while c.recv(65536):  # until the client closes
                pass
        except (EOFError, ConnectionError):
            pass
        finally:
            c.close()

    while True:
        c, _ = ls.accept()
        threading.Thread(target=session, args=(c,), daemon=True).start()


if __name__ == "__main__":
    if sys.argv[1] == "record":
        record(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    else:
        serve(int(sys.argv[2]), sys.argv[3])
