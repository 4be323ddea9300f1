"""Reads wrk's `--latency` report: requests per second, p50 and p99 in ms, non-2xx answers and
socket errors. `parse(path)` for scripts; as a command, `wrk_results.py NAME=FILE ...` prints
{NAME: results} as JSON."""

import json
import re
import sys


def parse(path):
    text = open(path).read()

    def ms(v, unit):
        return float(v) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    lat = {p: ms(*re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)", text, re.M).groups()) for p in ("50", "99")}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "rps": rps,
        "p50_ms": lat["50"],
        "p99_ms": lat["99"],
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(map(int, socket.groups())) if socket else 0,
    }


if __name__ == "__main__":
    print(json.dumps({arg.split("=", 1)[0]: parse(arg.split("=", 1)[1]) for arg in sys.argv[1:]}))
