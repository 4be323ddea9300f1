"""Where a chat's time goes: N chats, one after another, through llm-agent for each mode and
flow; each hop's time read from the trace's `duration_us` (the time since the previous step), and
the client's own clock for the whole chat. Standard library only.

    agent_hops.py AGENT_URL USER_TOKEN_FILE N > hops.json
"""

import http.client
import json
import statistics
import sys
import time
import urllib.parse

# The step that ends each hop; everything else is the agent's own work.
HOPS = {
    "OBO 0.A USER TOKEN (Tc)": "user token validated (a verified-token cache hit)",
    "2.C TOKEN RECEIVED": "sidecar: agent token",
    "OBO 2.D TOKEN RECEIVED": "sidecar: agent token",
    "3.C API RESPONSE": "weather-api",
    "1.A MODEL TOOL REQUEST": "Bedrock Converse 1 (asks for the tool)",
    "4.B MODEL ANSWER": "Bedrock Converse 2 (the answer)",
}

agent, token_file, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
user_token = open(token_file).read().strip()
url = urllib.parse.urlsplit(agent)
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)


def chat(body):
    start = time.perf_counter()
    conn.request("POST", "/api/chat", json.dumps(body), {"content-type": "application/json"})
    r = conn.getresponse()
    reply = json.loads(r.read())
    total_us = (time.perf_counter() - start) * 1e6
    if r.status != 200 or not reply.get("success"):
        sys.exit(f"chat failed ({r.status}): {reply.get('error')}")
    return total_us, reply["debug"]


out = {}
for mode in ("direct", "bedrock"):
    for flow in ("autonomous", "obo"):
        body = {"message": "Weather in Dallas?", "llm_mode": mode, "token_flow": flow}
        if flow == "obo":
            body["user_token"] = user_token
        chat(body)  # warm: credentials, connections, the city cache
        totals, hops = [], {}
        for _ in range(n):
            total, steps = chat(body)
            totals.append(total)
            per = {}
            for s in steps:
                hop = HOPS.get(s["step"], "the agent's own work (between hops)")
                per[hop] = per.get(hop, 0) + s["duration_us"]
            per["outside the trace (HTTP in and out, JSON)"] = total - sum(s["duration_us"] for s in steps)
            for k, v in per.items():
                hops.setdefault(k, []).append(v)
        whole = sum(totals)
        out[f"{mode}/{flow}"] = {
            "chats": n,
            "median_us": statistics.median(totals),
            "hops": {k: {"median_us": statistics.median(v), "share": sum(v) / whole} for k, v in hops.items()},
        }
print(json.dumps(out))
