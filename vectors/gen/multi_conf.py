#!/usr/bin/env python3
"""Generate vectors/data/multi_conf.json: proxy-multi.conf samples with C's verdict.

Every verdict is OBSERVED by running the C binary (GetPageSpeed v3.0.10 build) on the
sample:

* rejected samples: the exact `fatal:` text C writes to stderr (between the
  `config_filename = ...` log line and `error while re-reading config file ...`), and the
  code from `config check failed! (code N)`;
* accepted samples: C is run with `-v -v -v` and its second-pass log
  (`new target ... created (N): ip X, port P` / `-> added target to new|old auth_cluster #K`)
  and `re-read successfully (N bytes parsed)` are checked against an independent Python
  reading of the sample (below), which gives cluster ids, default, min/max and timeout.
  size and md5 come from Python's len() and hashlib.

Safety: the binary always runs inside `unshare -n` (an empty network namespace), as user
`nobody`, and is killed after a second. Set MTPROXY_C_BIN to the binary (default: the
reference build path). The binary is never committed.

Usage: python3 vectors/gen/multi_conf.py   (writes vectors/data/multi_conf.json)
"""
import hashlib
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

BIN = os.environ.get("MTPROXY_C_BIN", "/tmp/cref/gps/objs/bin/mtproto-proxy")
PROV = "observed: GetPageSpeed v3.0.10 build"
# The hosts table the C run sees (/etc/hosts of the generating machine, localhost only is used).
HOSTS = {"localhost": "127.0.0.1"}

SAMPLES = []


def s(name, text, note=""):
    SAMPLES.append((name, text, note))


# ---- accepted ----
s("real_shape_default_2",
  "# force_probability 10 10\ndefault 2;\n"
  + "".join(f"proxy_for {d} 127.0.0.{abs(d)}:8888;\nproxy_for {-d} 127.0.0.{abs(d)}:8888;\n" for d in range(1, 4))
  + "proxy_for 4 127.0.0.4:8888;\nproxy_for 4 127.0.1.4:8888;\nproxy_for -4 127.0.0.4:8888;\n"
  + "proxy_for 5 127.0.0.5:8888;\nproxy_for -5 127.0.0.5:8888;\n")
s("old_proxy_form", "proxy 127.0.0.1:18888;\n")
s("proxy_and_proxy_for_0_same_cluster", "proxy 127.0.0.1:1;\nproxy_for 0 127.0.0.2:1;\n")
s("all_dcs_same_address_dedup", "".join(f"proxy_for {d} 127.0.0.1:18888;\n" for d in (1, -1, 2, -2, 3)) + "default 2;\n")
s("duplicate_in_cluster", "proxy_for 1 127.0.0.1:1;\nproxy_for 1 127.0.0.1:1;\n")
s("min_max_connections", "max_connections 16;\nmin_connections 2;\nproxy 127.0.0.1:1;\n")
s("max_connections_1000", "max_connections 1000;\nproxy 127.0.0.1:1;\n")
s("timeout_10", "timeout 10;\nproxy 127.0.0.1:1;\n")
s("timeout_30000", "timeout 30000;\nproxy 127.0.0.1:1;\n")
s("comments_crlf_tabs", "# head\r\n\tproxy_for\t3\t127.0.0.1:3 ; # tail\r\n#x\r\ndefault\t3\t;\r\n")
s("default_negative", "proxy_for -2 127.0.0.1:1;\ndefault -2;\n")
s("default_missing_cluster", "proxy_for 1 127.0.0.1:1;\ndefault 5;\n")
s("no_default_cluster_0_present", "proxy_for 3 127.0.0.1:1;\nproxy 127.0.0.1:2;\n")
s("keyword_prefix_proxy_glued", "proxy127.0.0.1:80;\n")
s("keyword_prefix_default_glued", "default2;proxy_for 2 127.0.0.1:80;\n")
s("hosts_localhost", "proxy_for 2 localhost:443;\n")
s("ipv6_bracket", "proxy_for 2 [::1]:443;\n")
s("ipv6_bracket_v4mapped", "proxy_for 2 [::ffff:127.0.0.1]:443;\n")
s("ipv4_shorthand_127_1", "proxy 127.1:80;\n")
s("ipv4_octal_part", "proxy 0177.0.0.1:80;\n")
s("colon_after_newline_and_comment", "proxy 127.0.0.1 # c\n : 80 ;\n")
s("port_leading_zeros", "proxy 127.0.0.1:00080;\n")
s("port_truncated_to_int", "proxy 127.0.0.1:4294967376;\n", "2^32+80 stored in a C int")
s("dc_min_max", "proxy_for -32768 127.0.0.1:1;\nproxy_for 32767 127.0.0.1:2;\n")
s("port_65535", "proxy 127.0.0.1:65535;\n")
s("two_spaces_after_dc", "proxy_for 1  127.0.0.1:80;\n")
s("nul_ends_text", "proxy 127.0.0.1:80;\n\0garbage that C never reads", "C parses up to the first NUL; size/md5 cover the whole file")
s("many_clusters_1024", "".join(f"proxy_for {i} 127.0.0.1:{i + 1};\n" for i in range(1024)))

# ---- rejected ----
s("intermixed_real_shape",
  "# force_probability 10 10\ndefault 2;\n"
  + "".join(f"proxy_for {d} 127.0.0.{abs(d)}:8888;\nproxy_for {-d} 127.0.0.{abs(d)}:8888;\n" for d in range(1, 6))
  + "proxy_for 4 127.0.1.4:8888;\n")
s("missing_semicolon", "proxy_for 1 127.0.0.1:18888;\nproxy_for 2 127.0.0.1:18889\nproxy_for 1 127.0.0.1:1;\n")
s("missing_semicolon_at_eof", "proxy 127.0.0.1:80")
s("unknown_directive", "  \n foo;")
s("unknown_directive_first_line", "bogus_directive_with_long_name;\n")
s("empty_file", "")
s("comment_only", "# nothing\n")
s("stray_semicolon", ";\nproxy 127.0.0.1:80;\n")
s("double_semicolon", "proxy 127.0.0.1:80;;\n")
s("two_targets_one_statement", "proxy 127.0.0.1:80 proxy 127.0.0.1:81;\n")
s("intermixed", "proxy_for 1 127.0.0.1:1;\nproxy_for 2 127.0.0.1:1;\nproxy_for 1 127.0.0.1:2;\n")
s("intermixed_old_form", "proxy 127.0.0.1:1;\nproxy_for 2 127.0.0.1:1;\nproxy 127.0.0.1:2;\n")
s("timeout_too_small", "timeout 9;\nproxy 127.0.0.1:1;\n")
s("timeout_too_big", "proxy 127.0.0.1:1;\ntimeout 30001;\n")
s("timeout_no_number", "timeout;\nproxy 127.0.0.1:1;\n")
s("port_zero", "proxy 127.0.0.1:0;\n")
s("port_65536", "proxy 127.0.0.1:65536;\n")
s("port_missing", "proxy 127.0.0.1:;\n")
s("port_negative", "proxy 127.0.0.1:-1;\n")
s("colon_missing", "proxy 127.0.0.1;\n")
s("dc_32768", "proxy_for 32768 127.0.0.1:1;\n")
s("dc_minus_32769", "proxy_for -32769 127.0.0.1:1;\n")
s("dc_not_a_number", "proxy_for x 127.0.0.1:1;\n")
s("dc_on_next_line", "proxy_for\n1 127.0.0.1:1;\n")
s("dc_no_space", "proxy_for 1,127.0.0.1:1;\n")
s("unresolvable_name", "# x\nproxy_for 1 nosuchhost:80;\n")
s("unresolvable_trailing_dot", "proxy 127.0.0.1.:80;\n")
s("unresolvable_bad_octal", "proxy 08.0.0.1:80;\n")
s("unresolvable_bracket_v4", "proxy [127.0.0.1]:80;\n")
s("unresolvable_open_bracket", "\n\nproxy [::1:80;\n")
s("hostname_too_long", "proxy " + "a" * 64 + ":80;\n")
s("hostname_expected", "proxy :80;\n")
s("hostname_on_next_line", "proxy\n127.0.0.1:80;\n")
s("max_below_min", "max_connections 3;\nproxy 127.0.0.1:1;\n")
s("max_above_1000", "max_connections 1001;\nproxy 127.0.0.1:1;\n")
s("min_zero", "min_connections 0;\nproxy 127.0.0.1:1;\n")
s("min_above_max", "min_connections 9;\nproxy 127.0.0.1:1;\n")
s("default_no_number", "default;\nproxy 127.0.0.1:1;\n")
s("only_default", "default 2;\n")
s("too_many_clusters", "".join(f"proxy_for {i} 127.0.0.1:1;\n" for i in range(1025)))
s("too_many_targets", "proxy 127.0.0.1:1;\n" * 4097)
s("brace_lexeme", "{ proxy 127.0.0.1:1; }\n")


def run_c(text, verbose):
    d = tempfile.mkdtemp(prefix="mcgen")
    try:
        with open(os.path.join(d, "t.conf"), "wb") as f:
            f.write(text.encode("latin-1"))
        with open(os.path.join(d, "secret"), "wb") as f:
            f.write(bytes(range(128)))
        os.chmod(d, 0o755)
        cmd = ["unshare", "-n", BIN, "-u", "nobody", "-c", "4096", "--aes-pwd", "secret"]
        if verbose:
            cmd += ["-v", "-v", "-v"]
        cmd.append("t.conf")
        p = subprocess.Popen(cmd, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _, err = p.communicate(timeout=1.5)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        return err.decode("latin-1")
    finally:
        shutil.rmtree(d)


LOG = re.compile(r"^\[\d+\]\[[^\]]*\] ")


def c_error(text):
    err = run_c(text, False)
    m = re.search(r"config check failed! \(code (-?\d+)\)", err)
    if not m:
        return None
    start = err.index("config_filename = 't.conf'\n") + len("config_filename = 't.conf'\n")
    end = err.index("error while re-reading config file")
    end = err.rindex("\n", 0, end) + 1  # drop the log prefix of that line
    return err[start:end].rstrip("\n"), int(m.group(1))


def resolve(host):
    if host.startswith("[") and host.endswith("]"):
        return ipaddress.IPv6Address(host[1:-1])
    if host in HOSTS:
        return ipaddress.IPv4Address(HOSTS[host])
    return ipaddress.IPv4Address(socket.inet_aton(host))


def py_model(text):
    """An independent reading of a VALID sample (the samples above use a plain layout)."""
    raw = text.encode("latin-1")
    body = text.split("\0")[0]
    body = re.sub(r"#[^\n]*", "", body)
    conf = {"clusters": [], "default_cluster_id": 0, "min_connections": 4, "max_connections": 8,
            "timeout_ms": 300, "targets": []}
    for st in body.split(";"):
        st = st.strip(" \t\r\n")
        if not st:
            continue
        m = re.fullmatch(r"proxy_for[ \t]*(-?\d+)[ \t]+(\S+?)\s*:\s*(\d+)", st) or \
            re.fullmatch(r"proxy()[ \t]*(\S+?)\s*:\s*(\d+)", st)
        if m:
            dc = int(m.group(1) or 0)
            port = int(m.group(3)) & 0xFFFFFFFF
            ip = resolve(m.group(2))
            addr = f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
            if not conf["clusters"] or conf["clusters"][-1]["id"] != dc:
                assert all(c["id"] != dc for c in conf["clusters"])
                conf["clusters"].append({"id": dc, "targets": []})
            conf["clusters"][-1]["targets"].append(addr)
            if addr not in conf["targets"]:
                conf["targets"].append(addr)
            continue
        m = re.fullmatch(r"default[ \t]*(-?\d+)", st)
        if m:
            conf["default_cluster_id"] = int(m.group(1))
            continue
        m = re.fullmatch(r"(timeout|min_connections|max_connections)[ \t]*(\d+)", st)
        assert m, st
        key = {"timeout": "timeout_ms"}.get(m.group(1), m.group(1))
        conf[key] = int(m.group(2))
    ids = [c["id"] for c in conf["clusters"]]
    conf["default_cluster"] = conf["default_cluster_id"] if conf["default_cluster_id"] in ids else None
    conf["size"] = len(raw)
    conf["md5"] = hashlib.md5(raw).hexdigest()
    return conf


def check_against_c_log(text, conf):
    err = run_c(text, True)
    assert f"re-read successfully ({conf['size']} bytes parsed)" in err, err[-2000:]
    tail = err[err.index("Command line parsed"):]
    events = re.findall(r"new target 0x[0-9a-f]+ created \((\d)\): ip ([0-9.]+), port (\d+)\n"
                        r"(?:.*\n)*?.*-> added target to (new|old) auth_cluster #(\d+)", tail)
    flat = [(c["id"], t) for c in conf["clusters"] for t in c["targets"]]
    assert len(events) == len(flat), (len(events), len(flat))
    seen = set()
    for (created, ip, port, kind, idx), (dc, addr) in zip(events, flat):
        host, _, p = addr.rpartition(":")
        assert p == port, (addr, port)
        if not host.startswith("["):
            assert host == ip, (addr, ip)
        assert conf["clusters"][int(idx)]["id"] == dc
        assert (created == "1") == (addr not in seen), (addr, created)
        seen.add(addr)
    assert len({e[4] for e in events}) == len(conf["clusters"])


def main():
    if not shutil.which("unshare"):
        sys.exit("unshare(1) is required: the C binary must run without network access")
    out = []
    for name, text, note in SAMPLES:
        e = c_error(text)
        v = {"name": name, "provenance": PROV, "file": "t.conf", "hosts": HOSTS, "text": text}
        if note:
            v["note"] = note
        if e is not None:
            v["error"], v["code"] = e
        else:
            conf = py_model(text)
            check_against_c_log(text, conf)
            v["expect"] = conf
        out.append(v)
        print(name, "->", "error" if e else "ok", file=sys.stderr)
    data = {
        "family": "multi_conf",
        "provenance": PROV + " (errors: C's stderr verbatim; parses: C's -vvv target/cluster log "
                      "cross-checked with an independent Python reading; md5/size: hashlib)",
        "vectors": out,
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "multi_conf.json")
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
