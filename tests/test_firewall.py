"""The hall PC's nftables rules (issue 18 item 9): the broker, /metrics, ssh and the device ports answer the
staff LAN only, the visitor network reaches the phone page and nothing else.

The text is checked by `nft -c` and read rule by rule; then it is loaded into a network namespace of a
"hall PC" and a "LAN" namespace connects from a staff, a visitor and an unknown address to every port
the hall PC listens on: what the rules say is what the kernel does.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hall_controller.operate.firewall import check_nftables, nftables_text

from .harness import hallctl

STAFF, VISITOR = ["192.168.10.0/24", "fd00:10::/64"], ["192.168.20.0/22"]


def nft_available() -> str | None:
    """Why `nft -c` cannot run here, or None."""
    if shutil.which("nft") is None and not os.path.exists("/usr/sbin/nft"):
        return "no nft binary (Debian package nftables)"
    try:
        check_nftables("table inet probe {\n}\n")
    except (OSError, subprocess.SubprocessError) as exc:
        return f"nft -c cannot run here: {exc}"
    return None


def rules(text: str) -> list[str]:
    """The rule lines of the input chain, without comments."""
    chain = text.split("chain input {", 1)[1].split("}\n}", 1)[0]
    return [line.strip() for line in chain.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_the_rules_say_who_reaches_what() -> None:
    text = nftables_text(STAFF, VISITOR, device_ports=[9200])
    assert text.startswith("# The hall PC's firewall") and "table inet hall {" in text
    assert "delete table inet hall" in text          # loading it again replaces the table, no duplicate rules
    assert "elements = { 192.168.10.0/24 }" in text and "elements = { fd00:10::/64 }" in text
    assert "elements = { 192.168.20.0/22 }" in text
    chain = rules(text)
    assert chain[:3] == ["type filter hook input priority filter; policy accept;", 'iif "lo" accept',
                         "ct state established,related accept"]
    # visitors: the web page, then nothing (before any staff rule could let them in)
    visitor = [r for r in chain if "@visitor_v4" in r]
    assert visitor == ["ip saddr @visitor_v4 tcp dport 8080 accept", "ip saddr @visitor_v4 drop"]
    assert chain.index(visitor[-1]) < min(chain.index(r) for r in chain if "@staff" in r)
    # staff: broker (TLS), /metrics, the web page, ssh, the device port — never the plain 1883
    staff = "tcp dport { 22, 8080, 8883, 9108, 9200 } accept"
    assert f"ip saddr @staff_v4 {staff}" in chain and f"ip6 saddr @staff_v6 {staff}" in chain
    # everyone else: none of them
    assert chain[-1] == "tcp dport { 22, 1883, 8080, 8883, 9108, 9200 } drop"

    no_ssh = rules(nftables_text(["10.0.0.0/8"], [], ssh=False, broker_port=18883))
    assert "ip saddr @staff_v4 tcp dport { 8080, 9108, 18883 } accept" in no_ssh
    assert no_ssh[-1] == "tcp dport { 22, 1883, 8080, 9108, 18883 } drop"     # no ssh from any network
    assert not any("visitor" in r for r in no_ssh)


@pytest.mark.parametrize("staff, visitors, fragment", [
    ([], ["192.168.20.0/24"], "staff_lan"),
    (["192.168.10.0/24"], ["192.168.10.128/25"], "重叠"),
    (["192.168.10.0/33"], [], "不是网段"),
    (["hall-lan"], [], "不是网段"),
])
def test_bad_networks_are_refused(staff, visitors, fragment) -> None:
    with pytest.raises(ValueError, match=fragment):
        nftables_text(staff, visitors)
    with pytest.raises(ValueError, match="端口"):
        nftables_text(["10.0.0.0/8"], [], device_ports=[70000])


@pytest.mark.skipif(nft_available() is not None, reason=str(nft_available()))
def test_nft_accepts_the_rules(tmp_path: Path, capsys) -> None:
    for text in (nftables_text(STAFF, VISITOR, device_ports=[9200]), nftables_text(["10.1.0.0/16"], [], ssh=False),
                 nftables_text(["10.1.0.0/16", "fd00:10::/48"], ["172.16.0.0/12", "fd20::/16"])):
        assert check_nftables(text) is None, text
    assert check_nftables(nftables_text(STAFF, VISITOR).replace("accept", "acept", 1)) is not None  # it does check
    assert hallctl(["firewall", "--staff", "192.168.10.0/24", "--visitor", "192.168.20.0/24", "--check"]) == 0
    assert capsys.readouterr().out == nftables_text(["192.168.10.0/24"], ["192.168.20.0/24"])


# ------------------------------------------------------------------------------ enforced by the kernel

LISTENER = """
import socket, sys, time
held = []
for port in map(int, sys.argv[1:]):
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        s = socket.socket(family, socket.SOCK_STREAM)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((address, port))
        s.listen(64)
        held.append(s)
print("ready", flush=True)
time.sleep(300)
"""

PROBE = """
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
def probe(item):
    source, target, port = item
    family = socket.AF_INET6 if ":" in target else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(0.7)
        s.bind((source, 0))
        try:
            s.connect((target, port))
        except TimeoutError:
            return "dropped"
        except ConnectionRefusedError:
            return "refused"
        return "open"
items = json.loads(sys.argv[1])
with ThreadPoolExecutor(len(items)) as pool:
    print(json.dumps(list(pool.map(probe, items))))
"""


def netns_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no ip command (iproute2)"
    return nft_available()


def run(*argv: str) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


@pytest.mark.skipif(netns_reason() is not None, reason=str(netns_reason()))
def test_the_kernel_does_what_the_rules_say(tmp_path: Path) -> None:
    tag = f"{os.getpid() % 100000}"
    hall, lan = f"hallfw-h{tag}", f"hallfw-c{tag}"
    ports = {"broker": 8883, "plain": 1883, "metrics": 9108, "web": 8080, "ssh": 22, "device": 9200,
             "other": 5555}
    rules_file = tmp_path / "hall.nft"
    rules_file.write_text(nftables_text(["192.168.10.0/24", "fd00:10::/64"], ["192.168.20.0/24", "fd00:20::/64"],
                                        device_ports=[9200]))
    listener = None
    try:
        try:
            run("ip", "netns", "add", hall)
        except RuntimeError as exc:
            pytest.skip(f"cannot make a network namespace here: {exc}")
        run("ip", "netns", "add", lan)
        run("ip", "link", "add", f"vh{tag}", "netns", hall, "type", "veth", "peer", "name", f"vc{tag}", "netns", lan)
        for ns, dev, host in ((hall, f"vh{tag}", "1"), (lan, f"vc{tag}", "5")):
            for net in ("192.168.10", "192.168.20", "10.99.0"):
                run("ip", "-n", ns, "addr", "add", f"{net}.{host}/24", "dev", dev)
            for net in ("fd00:10", "fd00:20", "fd00:99"):
                run("ip", "-n", ns, "addr", "add", f"{net}::{host}/64", "dev", dev, "nodad")
            run("ip", "-n", ns, "link", "set", dev, "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "netns", "exec", hall, "nft", "-f", str(rules_file))
        listener = subprocess.Popen(["ip", "netns", "exec", hall, sys.executable, "-c", LISTENER,
                                     *map(str, ports.values())], stdout=subprocess.PIPE, text=True)
        assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"

        sources = {"staff": ("192.168.10", "fd00:10"), "visitor": ("192.168.20", "fd00:20"),
                   "unknown": ("10.99.0", "fd00:99")}
        items = [(f"{v4}.5", f"{v4}.1", port) for (v4, _v6), port in itertools.product(sources.values(), ports.values())]
        items += [(f"{v6}::5", f"{v6}::1", port) for (_v4, v6), port in itertools.product(sources.values(),
                                                                                           ports.values())]
        results = json.loads(run("ip", "netns", "exec", lan, sys.executable, "-c", PROBE, json.dumps(items)))
        reached = {(source, dest, port): result for (source, dest, port), result in zip(items, results, strict=True)}

        def seen(who: str, ipv6: bool = False) -> dict[str, str]:
            v4, v6 = sources[who]
            source, dest = (f"{v6}::5", f"{v6}::1") if ipv6 else (f"{v4}.5", f"{v4}.1")
            return {name: reached[(source, dest, port)] for name, port in ports.items()}

        for ipv6 in (False, True):
            assert seen("staff", ipv6) == {"broker": "open", "plain": "dropped", "metrics": "open", "web": "open",
                                           "ssh": "open", "device": "open", "other": "open"}, ipv6
            assert seen("visitor", ipv6) == {name: ("open" if name == "web" else "dropped") for name in ports}, ipv6
            assert seen("unknown", ipv6) == {name: ("open" if name == "other" else "dropped") for name in ports}, ipv6
        # the hall PC itself (loopback): the plain MQTT port too
        local = json.loads(run("ip", "netns", "exec", hall, sys.executable, "-c", PROBE,
                               json.dumps([["127.0.0.1", "127.0.0.1", ports["plain"]],
                                           ["127.0.0.1", "127.0.0.1", ports["broker"]]])))
        assert local == ["open", "open"]
    finally:
        if listener is not None:
            listener.kill()
            listener.wait(10)
        for ns in (hall, lan):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
