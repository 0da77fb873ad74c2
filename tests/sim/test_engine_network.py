"""Machines are reachable on their 198.19.249.x address from the host and from each other, nothing else."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from engine_support import Machine, address_table, assert_gone, machine_processes

from pytest_orbstack.sim import network

SERVE = (
    "cd /tmp && echo {word} > index.html && python3 -m http.server {port} --bind 0.0.0.0 >/dev/null 2>&1 &"
)


def _fetch(url: str, deadline: float = 15.0) -> str:
    last: Exception | None = None
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return str(resp.read().decode())
        except OSError as exc:  # the server may still be starting
            last = exc
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer: {last}")


def test_server_in_machine_answers_on_its_ip4_from_the_host(make_machine) -> None:
    m = make_machine("net-srv")
    assert m.ip.startswith(f"{network.SUBNET}.")
    assert m.ip != network.HOST_IP
    assert m.sh(SERVE.format(word="hello-from-machine", port=8080)).returncode == 0
    assert _fetch(f"http://{m.ip}:8080/index.html") == "hello-from-machine\n"
    addrs = m.run("ip", "-o", "-4", "addr", "show", "dev", "eth0").stdout
    assert f"inet {m.ip}/24" in addrs


def test_machines_reach_each_other(make_machine) -> None:
    a, b = make_machine("net-a"), make_machine("net-b")
    assert a.ip != b.ip
    assert a.sh(SERVE.format(word="from-a", port=8081)).returncode == 0
    _fetch(f"http://{a.ip}:8081/index.html")  # up
    probe = (
        "import urllib.request, sys; "
        f"page = urllib.request.urlopen('http://{a.ip}:8081/index.html', timeout=5); "
        "sys.stdout.write(page.read().decode())"
    )
    res = b.run("python3", "-c", probe)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "from-a\n"


def test_mac_follows_the_address(make_machine) -> None:
    """Whoever holds an address has its MAC, so a neighbour entry cached for a reused address stays right."""
    m = make_machine("net-mac")
    mac = network.mac_for(m.ip)
    assert m.run("cat", "/sys/class/net/eth0/address").stdout == f"{mac}\n"
    assert m.sh(SERVE.format(word="mac", port=8082)).returncode == 0
    assert _fetch(f"http://{m.ip}:8082/index.html") == "mac\n"
    show = ["ip", "neigh", "show", m.ip, "dev", network.BRIDGE]
    neigh = subprocess.run(show, check=True, capture_output=True, text=True, timeout=10)
    assert f"lladdr {mac} " in neigh.stdout


def test_mac_is_unicast_local_and_distinct_per_address() -> None:
    macs = {network.mac_for(f"{network.SUBNET}.{n}") for n in range(network.FIRST, network.LAST + 1)}
    assert len(macs) == network.LAST - network.FIRST + 1
    assert network.mac_for("198.19.249.3") == "02:0b:c6:13:f9:03"  # bit 1 set (local), bit 0 clear (unicast)


def test_no_route_beyond_the_subnet(make_machine) -> None:
    m = make_machine("net-route")
    routes = m.run("ip", "route").stdout
    assert "default" not in routes
    assert f"{network.SUBNET}.0/24 dev eth0" in routes
    # Asking the kernel for a route sends nothing.
    res = m.run("ip", "route", "get", "192.0.2.1")
    assert res.returncode != 0
    assert "unreachable" in res.stderr.lower()


def test_address_recorded_and_released(make_machine, ns_engine) -> None:
    m = make_machine("net-rel")
    owner = str(m.mdir.resolve())
    table = address_table()
    assert table[m.ip]["owner"] == owner
    veth = m.runtime()["veth"]
    assert isinstance(veth, str)
    assert len(veth) <= 15
    assert veth in network.bridge_ports()
    ns_engine.halt(m.mdir)
    assert m.ip not in address_table() or address_table()[m.ip]["owner"] != owner
    assert not network.link_exists(veth)
    assert not ns_engine.running(m.mdir)
    again = ns_engine.boot(m.mdir, hostname="net-rel")
    assert json.loads((m.mdir / "runtime.json").read_text())["ip"] == again


def test_parallel_boots_get_distinct_addresses(ns_engine, tmp_path) -> None:
    dirs = []
    for i in range(4):
        mdir = tmp_path / f"home{i}" / "machines" / f"par{i}"  # a home each, like parallel test processes
        mdir.mkdir(parents=True)
        ns_engine.prepare(mdir, hostname=f"par{i}", username="alice")
        dirs.append(mdir)
    try:
        with ThreadPoolExecutor(4) as pool:
            ips = list(pool.map(lambda d: ns_engine.boot(d, hostname=d.name), dirs))
        assert len(set(ips)) == 4
        for mdir, ip in zip(dirs, ips):
            m = Machine(ns_engine, mdir, mdir.name, "alice")
            assert m.run("hostname").stdout == f"{mdir.name}\n"
            assert f"inet {ip}/24" in m.run("ip", "-o", "-4", "addr", "show", "dev", "eth0").stdout
        records = [json.loads((d / "runtime.json").read_text()) for d in dirs]
        seen = [machine_processes(r) for r in records]
    finally:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(ns_engine.destroy, dirs))
    for mdir, record, procs_seen in zip(dirs, records, seen):
        assert_gone(mdir, record, procs_seen)
