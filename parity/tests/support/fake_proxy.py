#!/usr/bin/env python3
"""Stand-in for a proxy binary in the parity harness's own tests (never a reference).

Accepts the mtproto-proxy command line, listens on the -H client port (accepting and holding
connections), serves GET /stats on the -p port when --http-stats is given, prints a start
banner, and exits on SIGTERM/SIGINT. Behaviour switches (environment):
  FAKE_PROXY_EXIT_AT_START=N   exit with code N before listening
  FAKE_PROXY_IGNORE_TERM=1     ignore SIGTERM (the harness must SIGKILL after its grace)
  FAKE_PROXY_TERM_CODE=N       exit code after SIGTERM (default 0)
"""
import os
import signal
import socket
import sys
import threading

VERSION = "mtproxy-standin-0.1 compiled for the parity tests"


def main():
    args = sys.argv[1:]
    if "--help" in args or "--version" in args:
        print("usage: fake_proxy.py [-p<port>] [-H<port>] <config-file>")
        print(VERSION)
        sys.exit(2)
    opts = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-u", "-c", "-p", "-H", "--address", "-S", "-P", "--aes-pwd", "-M"):
            opts.setdefault(a, []).append(args[i + 1])
            i += 2
        else:
            opts.setdefault("_", []).append(a)
            i += 1
    print(f"[{os.getpid()}] Invoking engine {VERSION}", file=sys.stderr, flush=True)
    code = os.environ.get("FAKE_PROXY_EXIT_AT_START")
    if code is not None:
        print("fatal: asked to exit at start", file=sys.stderr, flush=True)
        sys.exit(int(code))
    conf = next(x for x in opts.get("_", []) if x.endswith(".conf"))
    with open(conf) as f:
        conf_text = f.read()
    with open(opts["--aes-pwd"][0], "rb") as f:
        secret_len = len(f.read())

    term_code = int(os.environ.get("FAKE_PROXY_TERM_CODE", "0"))

    def on_term(signum, _frame):
        print(f"[pid {os.getpid()}] SIGTERM handled.", file=sys.stderr, flush=True)
        os._exit(term_code)

    if os.environ.get("FAKE_PROXY_IGNORE_TERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    held = []

    def serve_clients(sock):
        while True:
            c, _ = sock.accept()
            held.append(c)

    def serve_stats(sock):
        while True:
            c, _ = sock.accept()
            try:
                c.recv(4096)
                body = (
                    f"pid\t{os.getpid()}\n>>>>>>connections>>>>>>\tstart\n"
                    f"config_size\t{len(conf_text)}\nsecret_size\t{secret_len}\n"
                    f"held_clients\t{len(held)}\nversion\t{VERSION}\n"
                ).encode()
                head = (
                    "HTTP/1.1 200 OK\r\nServer: MTProxy/1.0\r\nContent-Type: text/plain\r\n"
                    f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
                ).encode()
                c.sendall(head + body)
            finally:
                c.close()

    def listen(port):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(port)))
        s.listen(128)
        return s

    threads = []
    if "--http-stats" in opts.get("_", []):
        threads.append(threading.Thread(target=serve_stats, args=(listen(opts["-p"][0]),), daemon=True))
    threads.append(threading.Thread(target=serve_clients, args=(listen(opts["-H"][0]),), daemon=True))
    for t in threads:
        t.start()
    print(f"[{os.getpid()}] main loop", file=sys.stderr, flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
