import sys, json
from tests.peers.sipp import SippUAS
from pua.runtime.loop import run as run_loop
from benchmarks.publish_rate import pua_publishes
n = int(sys.argv[1]) if len(sys.argv) > 1 else 30000
with SippUAS("publish_200") as uas:
    for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 1):
        print(json.dumps(run_loop(pua_publishes((uas.host, uas.port), n, 200))))
