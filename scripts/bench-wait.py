#!/usr/bin/env python3
"""Bench helper: waits, in one process over one keep-alive connection, until a condition holds.

  bench-wait.py line URL LINE [SECONDS]     until a line of GET URL's body equals LINE
  bench-wait.py count PORT DB N [SECONDS]   until InfluxDB on 127.0.0.1:PORT counts >= N
                                            points of cpu.usage_user in DB

Polls every 50 ms, for at most SECONDS (default 300); exits 1 on timeout. One process instead
of a curl per poll: forking curl ten times a second costs about an eighth of a core, which
the server being measured would otherwise lose.
"""
import http.client
import json
import sys
import time
import urllib.parse


def poll(host, port, path, test, seconds):
    conn = http.client.HTTPConnection(host, port, timeout=10)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            conn.request("GET", path)
            body = conn.getresponse().read().decode()
            if test(body):
                return 0
        except (OSError, http.client.HTTPException):
            conn.close()
        time.sleep(0.05)
    print(f"bench-wait: gave up after {seconds} s on {host}:{port}{path}", file=sys.stderr)
    return 1


def counted(n):
    def test(body):
        series = json.loads(body)["results"][0].get("series")
        return bool(series) and series[0]["values"][0][1] >= n

    return test


def main(argv):
    if len(argv) >= 3 and argv[1] == "line":
        url = urllib.parse.urlsplit(argv[2])
        want = argv[3]
        seconds = float(argv[4]) if len(argv) > 4 else 300
        path = url.path + ("?" + url.query if url.query else "")
        return poll(url.hostname, url.port, path, lambda b: want in b.splitlines(), seconds)
    if len(argv) >= 5 and argv[1] == "count":
        port, db, n = int(argv[2]), argv[3], int(argv[4])
        seconds = float(argv[5]) if len(argv) > 5 else 300
        query = urllib.parse.urlencode({"db": db, "q": "SELECT count(usage_user) FROM cpu"})
        return poll("127.0.0.1", port, "/query?" + query, counted(n), seconds)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
