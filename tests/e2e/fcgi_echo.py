#!/usr/bin/python3
"""A FastCGI responder that answers every request with its parameters as JSON (plus its pid,
the length of the body it read and $OTLOGIN_CONF). test_lighttpd.py runs it in place of
otlogin.fcgi to check what etc/lighttpd/otlogin.conf hands to the application. lighttpd passes
the listening socket as fd 0, as for any FastCGI program it spawns."""

import json
import os
import socket
import struct

FCGI_BEGIN, FCGI_END, FCGI_PARAMS, FCGI_STDIN, FCGI_STDOUT = 1, 3, 4, 5, 6


def read_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_record(conn):
    head = read_exact(conn, 8)
    if head is None:
        return None
    _, rtype, rid, clen, plen, _ = struct.unpack(">BBHHBB", head)
    body = read_exact(conn, clen + plen) if clen + plen else b""
    if body is None:
        return None
    return rtype, rid, body[:clen]


def name_values(data):
    out, i = {}, 0
    while i < len(data):
        lens = []
        for _ in range(2):
            n = data[i]
            if n >> 7:
                n = struct.unpack(">I", data[i:i + 4])[0] & 0x7FFFFFFF
                i += 4
            else:
                i += 1
            lens.append(n)
        name = data[i:i + lens[0]].decode("latin-1")
        i += lens[0]
        out[name] = data[i:i + lens[1]].decode("latin-1")
        i += lens[1]
    return out


def record(rtype, rid, content):
    return struct.pack(">BBHHBB", 1, rtype, rid, len(content), 0, 0) + content


def serve(conn):
    params, body, rid = b"", b"", 1
    while True:
        rec = read_record(conn)
        if rec is None:
            return
        rtype, rid, content = rec
        if rtype == FCGI_PARAMS:
            params += content
        elif rtype == FCGI_STDIN:
            if not content:
                break
            body += content
    env = name_values(params)
    env["_pid"] = os.getpid()
    env["_body_length"] = len(body)
    env["_OTLOGIN_CONF"] = os.environ.get("OTLOGIN_CONF")
    out = json.dumps(env).encode()
    resp = b"Status: 200 OK\r\nContent-Type: application/json\r\n\r\n" + out
    for i in range(0, len(resp), 32768):
        conn.sendall(record(FCGI_STDOUT, rid, resp[i:i + 32768]))
    conn.sendall(record(FCGI_STDOUT, rid, b""))
    conn.sendall(record(FCGI_END, rid, b"\0" * 8))


def main():
    listener = socket.socket(fileno=0)
    while True:
        conn, _ = listener.accept()
        try:
            serve(conn)
        finally:
            conn.close()


if __name__ == "__main__":
    main()
