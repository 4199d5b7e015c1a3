"""Opens COUNT connections to HOST:PORT as idle gRPC clients do (the HTTP/2
client preface and an empty SETTINGS frame, then nothing) and holds them
until its standard input closes.

    python3 hold_connections.py HOST PORT COUNT [SOURCE_IP]

Once every connection has been answered or closed by the server, or after
SETTLE_SECONDS, it prints one line and flushes it:

    held=N closed=N silent=N failed=N

held: the server answered (its SETTINGS frame) and keeps the connection
open; closed: the server closed it; silent: open, nothing from the server
yet (still in the listen backlog); failed: the connection could not be
made at all.
"""

import resource
import selectors
import socket
import sys
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
SETTLE_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 5.0


def main():
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    source = (sys.argv[4], 0) if len(sys.argv) > 4 else None
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    selector = selectors.DefaultSelector()
    failed = 0
    for _ in range(count):
        try:
            conn = socket.create_connection(
                (host, port), timeout=CONNECT_TIMEOUT_SECONDS, source_address=source
            )
            conn.sendall(PREFACE)
        except OSError:
            failed += 1
            continue
        conn.setblocking(False)
        selector.register(conn, selectors.EVENT_READ, "silent")

    held, closed = [], 0
    deadline = time.monotonic() + SETTLE_SECONDS
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.1):
            conn = key.fileobj
            try:
                answer = conn.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                answer = b""
            selector.unregister(conn)
            if answer:
                held.append(conn)
            else:
                conn.close()
                closed += 1
    silent = len(selector.get_map())
    print(f"held={len(held)} closed={closed} silent={silent} failed={failed}", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
