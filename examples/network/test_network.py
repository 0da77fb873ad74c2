"""Two machines talking over the network: a web server and a client, made in parallel."""

from __future__ import annotations

from pytest_orbstack import MachineFactory

SERVER = (
    "mkdir -p /tmp/site && echo 'hello over the network' > /tmp/site/index.html && "
    "cd /tmp/site && nohup python3 -m http.server 8080 --bind 0.0.0.0 >/tmp/http.log 2>&1 </dev/null &"
)
WAIT_LISTENING = "for i in $(seq 100); do ss -ltn | grep -q ':8080 ' && exit 0; sleep 0.1; done; exit 1"
FETCH = (
    "import sys, urllib.request; "
    "print(urllib.request.urlopen('http://' + sys.argv[1] + ':8080/', timeout=10).read().decode(), end='')"
)


def test_client_reaches_server(orb_machines: MachineFactory) -> None:
    server, client = orb_machines.create_many(2)
    server.run(SERVER)
    server.run(WAIT_LISTENING)

    result = client.run(["python3", "-c", FETCH, server.ip4])

    assert result.stdout == "hello over the network\n"


NAME_SERVER = """
import os, socket
server = socket.create_server(("0.0.0.0", 9000))
conn, _ = server.accept()
conn.sendall(os.uname().nodename.encode())
conn.close()
"""
ASK_NAME = """
import socket, sys, time
for _ in range(100):
    try:
        conn = socket.create_connection((sys.argv[1], 9000), timeout=5)
        break
    except OSError:
        time.sleep(0.1)
print(conn.recv(100).decode())
"""


def test_machines_see_each_other(orb_machines: MachineFactory) -> None:
    first = orb_machines.create()
    second = orb_machines.create()
    assert first.ip4 != second.ip4
    first.write_text("/tmp/name_server.py", NAME_SERVER)
    first.run("nohup python3 /tmp/name_server.py >/tmp/name_server.log 2>&1 </dev/null &")

    answer = second.run(["python3", "-c", ASK_NAME, first.ip4])

    assert answer.stdout.strip() == first.name
