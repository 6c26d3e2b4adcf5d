"""Runs a rendering (base or overlay) here with the real binaries, as its pods would run.

    python run_rendered.py RENDERED.yaml BIN_DIR

Starts the three cores of the StatefulSet and two replicants of the Deployment as local
processes with exactly the environment and arguments of their containers, the downward API
filled in as the kubelet would (pod name, namespace, pod index, pod IP = 127.0.0.1), and
the only changes a single machine forces: the cores' DNS names become localhost, every port is a
free one (listeners stay on 0.0.0.0, so the secure-default checks of a listener off loopback
apply as in a pod), every path moves under a temporary directory. The CA and the API keys
are made as docs/kubernetes.md says. Then it checks, each with a deadline:

- the cores form one group from their initial members and each knows the leader; the
  leader hands its leadership over with the Secret's key (skipped on a core-node without
  `POST /api/v5/cluster/leader/transfer`);
- each pod's init container issued its node's certificate (core-<index>, <pod name>) from
  the CA (init containers run first, as the kubelet runs them), and no node runs with ca.key;
- the replicants catch up and pass their readiness probe (the availability check);
- a client authenticates with a user created through the API key of the Secret;
- the preStop command of the Deployment, as written, evacuates its replicant: the readiness
  probe turns 503 and the node reaches "prohibiting", and a second run succeeds too (a `ctl`
  without `--wait-done` runs the command without it, once, and polls the status itself).

Every process it started is stopped at the end, by its pid. Exit 0 when all held.
"""

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import yaml

DEADLINE = 60.0


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, auth=None, data=None):
    """(status, body) of a request; status 0 when nothing answers."""
    req = urllib.request.Request(url, data=data)
    if auth:
        req.add_header("Authorization", auth)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def wait_for(what, check, deadline=DEADLINE, cluster=None):
    """Polls `check` until it returns something true; fails at the deadline, or at once when
    one of the cluster's processes has exited."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if cluster is not None:
            cluster.assert_running()
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"not within {deadline:.0f} s: {what}")


class Cluster:
    def __init__(self, rendered, bin_dir, work):
        self.objs = [o for o in yaml.safe_load_all(Path(rendered).read_text()) if o]
        self.bin = Path(bin_dir)
        self.work = Path(work)
        self.procs = []
        self.sts = self.one("StatefulSet", "meshmq-core")
        self.dep = self.one("Deployment", "meshmq-replicant")
        self.ns = self.sts["metadata"].get("namespace", "default")
        self.svc = self.sts["spec"]["serviceName"]

    def one(self, kind, prefix):
        found = [o for o in self.objs
                 if o["kind"] == kind and o["metadata"]["name"].startswith(prefix)]
        assert len(found) == 1, f"{kind} {prefix}: {len(found)}"
        return found[0]

    def secrets(self):
        """The Secrets' files, made as docs/kubernetes.md says."""
        ca = self.work / "secret-ca"
        subprocess.run([str(self.bin / "core-node"), "gen-certs", "--out", str(ca),
                        "--nodes", "admin"], check=True, capture_output=True)
        keys = self.work / "secret-api"
        keys.mkdir()
        (keys / "replicant-bootstrap").write_text(f"admin:{os.urandom(24).hex()}\n")
        (keys / "core-api-key").write_text(os.urandom(32).hex())
        # The clients' TLS certificate (an overlay's kubernetes.io/tls Secret): any
        # certificate does; this one is from the cluster CA, for localhost.
        gen = self.work / "gen-tls"
        shutil.copytree(ca, gen)
        subprocess.run([str(self.bin / "core-node"), "gen-certs", "--out", str(gen),
                        "--nodes", "mqtt-tls"], check=True, capture_output=True)
        tls = self.work / "secret-tls"
        tls.mkdir()
        shutil.copy(gen / "mqtt-tls.pem", tls / "tls.crt")
        shutil.copy(gen / "mqtt-tls.key", tls / "tls.key")
        self.secret_files = {"meshmq-cluster-ca": ca, "meshmq-api-keys": keys,
                             "meshmq-mqtt-tls": tls}

    def mounts(self, workload, c, pod_dir):
        """Container path -> local path for every mount (secrets copied, dirs created)."""
        vols = {v["name"]: v for v in workload["spec"]["template"]["spec"].get("volumes", [])}
        out = {}
        for m in sorted(c.get("volumeMounts", []), key=lambda m: len(m["mountPath"])):
            local = pod_dir / m["mountPath"].strip("/")
            v = vols.get(m["name"], {})
            if "secret" in v:
                src = self.secret_files[v["secret"]["secretName"]]
                items = {i["path"]: i["key"] for i in v["secret"].get("items", [])}
                if "subPath" in m:
                    local.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(src / items.get(m["subPath"], m["subPath"]), local)
                    local.chmod(0o440)
                else:
                    local.mkdir(parents=True, exist_ok=True)
                    for path, key in (items or {f.name: f.name for f in src.iterdir()}).items():
                        shutil.copy(src / key, local / path)
            elif "configMap" in v:
                local.mkdir(parents=True, exist_ok=True)
                cm = self.one("ConfigMap", v["configMap"]["name"])
                for name, text in cm["data"].items():
                    (local / name).write_text(text)
            else:
                local.mkdir(parents=True, exist_ok=True)
            out[m["mountPath"]] = str(local)
        return out

    def init_containers(self, workload, pod_dir, fields):
        """Runs the pod's init containers to completion, as the kubelet does before the
        main container: same mounts (the emptyDirs are kept), environment and arguments
        ($(VAR) expanded). Secret files mounted with subPath go away afterwards (they are
        the init container's bind mounts, not files of the emptyDir)."""
        for ic in workload["spec"]["template"]["spec"].get("initContainers", []):
            paths = self.mounts(workload, ic, pod_dir)

            def rewrite(v, paths=paths):
                for mp, local in sorted(paths.items(), key=lambda kv: -len(kv[0])):
                    if v.startswith(mp):
                        return local + v[len(mp):]
                return v

            env = self.env(ic, fields, lambda v: v)
            argv = list(ic.get("command", [])) + list(ic.get("args", []))
            for k, val in env.items():
                argv = [a.replace(f"$({k})", val) for a in argv]
            argv = [rewrite(a) for a in argv]
            argv[0] = str(self.bin / Path(argv[0]).name)
            r = subprocess.run(argv, env={"PATH": "/usr/bin:/bin",
                                          **{k: rewrite(v) for k, v in env.items()}},
                               capture_output=True, text=True)
            assert r.returncode == 0, (f"{pod_dir.name} init container {ic['name']} exited "
                                       f"{r.returncode}: {r.stdout}{r.stderr}")
            vols = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
            for m in ic.get("volumeMounts", []):
                if "subPath" in m and "secret" in vols.get(m["name"], {}):
                    Path(paths[m["mountPath"]]).unlink()

    def env(self, c, fields, rewrite):
        env = {}
        for src in c.get("envFrom", []):
            env.update(self.one("ConfigMap", src["configMapRef"]["name"])["data"])
        for e in c.get("env", []):
            if "valueFrom" in e:
                env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
            else:
                v = e["value"]
                for k, val in env.items():
                    v = v.replace(f"$({k})", val)
                env[e["name"]] = v
        return {k: rewrite(v) for k, v in env.items()}

    def start(self, argv, env, log):
        with open(log, "w") as out:
            p = subprocess.Popen(argv, env={"PATH": "/usr/bin:/bin", **env},
                                 stdout=out, stderr=subprocess.STDOUT)
        self.procs.append((p, log))
        return p

    def assert_running(self):
        for p, log in self.procs:
            if p.poll() is not None:
                lines = Path(log).read_text().strip().splitlines() or ["(no output)"]
                raise AssertionError(f"{Path(log).parent.name} exited ({p.returncode}): "
                                     f"{lines[-1]}")

    def start_cores(self):
        spec = self.sts["spec"]
        ids = range(spec["ordinals"]["start"], spec["ordinals"]["start"] + spec["replicas"])
        self.core_quic = {i: free_port(socket.SOCK_DGRAM) for i in ids}
        self.core_http = {i: free_port() for i in ids}
        name = self.sts["metadata"]["name"]
        c = self.sts["spec"]["template"]["spec"]["containers"][0]
        for i in ids:
            pod = f"{name}-{i}"
            pod_dir = self.work / pod
            fields = {"metadata.name": pod, "metadata.namespace": self.ns,
                      "metadata.labels['apps.kubernetes.io/pod-index']": str(i)}
            self.init_containers(self.sts, pod_dir, fields)
            paths = self.mounts(self.sts, c, pod_dir)

            def rewrite(v, i=i, paths=paths):
                for j in ids:
                    v = v.replace(f"{name}-{j}.{self.svc}.{self.ns}.svc:4370",
                                  f"localhost:{self.core_quic[j]}")
                v = v.replace("0.0.0.0:4370", f"0.0.0.0:{self.core_quic[i]}")
                v = v.replace("0.0.0.0:18084", f"0.0.0.0:{self.core_http[i]}")
                for mp, local in sorted(paths.items(), key=lambda kv: -len(kv[0])):
                    if v.startswith(mp):
                        return local + v[len(mp):]
                return v.replace("/var/lib/meshmq", str(pod_dir / "var/lib/meshmq"))

            env = self.env(c, fields, rewrite)
            argv = [str(self.bin / Path(c["command"][0]).name)] + c.get("args", [])
            self.start(argv, env, pod_dir / "log")
        self.core_ids = list(ids)

    def start_replicants(self, n=2):
        c = self.dep["spec"]["template"]["spec"]["containers"][0]
        self.replicants = []
        cores = ", ".join(f'"localhost:{p}"' for p in self.core_quic.values())
        for j in range(1, n + 1):
            pod = f"{self.dep['metadata']['name']}-5d8c7b9f4-x{j}k2p"
            pod_dir = self.work / pod
            fields = {"metadata.name": pod, "status.podIP": "127.0.0.1"}
            self.init_containers(self.dep, pod_dir, fields)
            paths = self.mounts(self.dep, c, pod_dir)
            ports = {"1883": free_port(), "8083": free_port(), "18083": free_port(),
                     "8883": free_port(), "8084": free_port(),
                     "5370": free_port(socket.SOCK_DGRAM)}

            def rewrite(v, paths=paths, ports=ports):
                v = v.replace(f'"{self.svc}:4370"', cores)
                for p, local in ports.items():
                    v = v.replace(f"0.0.0.0:{p}", f"0.0.0.0:{local}")
                    v = v.replace(f"127.0.0.1:{p}", f"127.0.0.1:{local}")
                for mp, local in sorted(paths.items(), key=lambda kv: -len(kv[0])):
                    if v.startswith(mp):
                        return local + v[len(mp):]
                return v

            env = self.env(c, fields, rewrite)
            argv = [str(self.bin / Path(c["command"][0]).name)] + [rewrite(a) for a in c["args"]]
            self.start(argv, env, pod_dir / "log")
            prestop = [rewrite(a) for a in c["lifecycle"]["preStop"]["exec"]["command"]]
            prestop[0] = str(self.bin / Path(prestop[0]).name)
            self.replicants.append({"pod": pod, "http": ports["18083"], "mqtt": ports["1883"],
                                    "tls": ports["8883"] if any(
                                        k.startswith("MESHMQ_LISTENERS__SSL__") for k in env)
                                    else None,
                                    "certs": Path(rewrite(env["MESHMQ_CLUSTER__CERTS_DIR"])),
                                    "prestop": prestop, "c": c})

    def stop(self):
        for p, _ in self.procs:
            if p.poll() is None:
                p.terminate()
        end = time.monotonic() + 20
        for p, _ in self.procs:
            try:
                p.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def same_leader(cl):
    """The leader id when every core's /health names the same one, else None."""
    ids = []
    for port in cl.core_http.values():
        status, body = http(f"http://127.0.0.1:{port}/health")
        ids.append(json.loads(body).get("leader_id") if status == 200 else None)
    return ids[0] if None not in ids and len(set(ids)) == 1 else None


def check_cores(cl):
    key = (cl.secret_files["meshmq-api-keys"] / "core-api-key").read_text()
    leader = wait_for("every core knows the same leader", lambda: same_leader(cl), cluster=cl)
    status, body = http(f"http://127.0.0.1:{cl.core_http[cl.core_ids[0]]}/api/v5/cluster",
                        auth=f"Bearer {key}")
    assert status == 200, (status, body)
    voters = sorted(m["id"] for m in json.loads(body)["members"] if m["voter"])
    assert voters == cl.core_ids, voters
    print(f"run_rendered: cores {voters} formed one group, leader {leader}")
    for i in cl.core_ids:
        certs = cl.work / f"{cl.sts['metadata']['name']}-{i}" / "run/meshmq/certs"
        assert (certs / f"core-{i}.pem").exists(), f"core {i} issued no certificate"
        assert not (certs / "ca.key").exists(), f"core {i} runs with the CA key"
    check_leader_transfer(cl, key, leader)


def check_leader_transfer(cl, key, leader):
    """The core upgrade's step (docs/kubernetes.md): the leader hands over, with the key of
    the Secret. Skipped on a build without the endpoint (404)."""
    to = next(i for i in cl.core_ids if i != leader)
    url = f"http://127.0.0.1:{cl.core_http[leader]}/api/v5/cluster/leader/transfer"
    status, body = http(url, auth=f"Bearer {key}", data=json.dumps({"to": to}).encode())
    if status == 404:
        print("run_rendered: this core-node has no leadership transfer: not tried")
        return
    assert status == 200 and json.loads(body).get("leader") == to, (status, body)
    wait_for(f"every core names {to} the leader", lambda: same_leader(cl) == to, cluster=cl)
    status, _ = http(url, auth=f"Bearer {key}", data=b"{}")
    assert status == 409, f"a core that no longer leads answered {status}"
    print(f"run_rendered: leadership transferred from core {leader} to core {to}")


def check_replicants(cl):
    for r in cl.replicants:
        probe = r["c"]["readinessProbe"]["httpGet"]["path"]
        wait_for(f"{r['pod']} ready", lambda r=r, probe=probe:
                 http(f"http://127.0.0.1:{r['http']}{probe}")[0] == 200, cluster=cl)
        assert (r["certs"] / f"{r['pod']}.pem").exists(), f"{r['pod']}: no certificate"
        assert not (r["certs"] / "ca.key").exists(), f"{r['pod']} runs with the CA key"
        _, body = http(f"http://127.0.0.1:{r['http']}/api/v5/status")
        assert json.loads(body)["node"] == r["pod"], body
    print("run_rendered: replicants ready, node name = pod name, certificates issued")


def check_tls(cl):
    """With the overlay's TLS listener: it serves the Secret's certificate."""
    r0 = cl.replicants[0]
    if r0["tls"] is None:
        return
    ctx = ssl.create_default_context(cafile=str(cl.secret_files["meshmq-cluster-ca"] / "ca.pem"))
    with socket.create_connection(("127.0.0.1", r0["tls"]), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as conn:
            cn = dict(x[0] for x in conn.getpeercert()["subject"]).get("commonName")
    assert cn == "mqtt-tls", cn
    print("run_rendered: MQTT over TLS serves the certificate of the Secret")


def check_login(cl, basic):
    r0 = cl.replicants[0]
    users = (f"http://127.0.0.1:{r0['http']}/api/v5/authentication/"
             "password_based:built_in_database/users")
    status, body = http(users, auth=basic, data=json.dumps(
        {"user_id": "sensor-1", "password": "s3cret-pw"}).encode())
    assert status in (200, 201), (status, body)
    loadtest = cl.bin / "loadtest"
    if not loadtest.exists():
        print("run_rendered: no loadtest binary: the login is not tried")
        return
    for password, want in (("s3cret-pw", "1 ok"), ("wrong-pw", "0 ok")):
        out = subprocess.run([str(loadtest), "conn", "-h", "127.0.0.1", "-p", str(r0["mqtt"]),
                              "-c", "1", "--duration", "1", "-u", "sensor-1",
                              "-P", password], capture_output=True, text=True, timeout=60)
        assert f"connect   {want}" in out.stdout, out.stdout + out.stderr
    print("run_rendered: a user made with the Secret's API key connects; a wrong password does not")


def check_prestop(cl, basic):
    r0 = cl.replicants[0]
    prestop = list(r0["prestop"])
    helptext = subprocess.run([prestop[0], "ctl", "rebalance", "start", "--help"],
                              capture_output=True, text=True).stdout
    waits = "--wait-done" in helptext
    if not waits:
        i = prestop.index("--wait-done")
        del prestop[i:i + 2]
        print("run_rendered: this ctl has no --wait-done: the hook runs without it")
    out = subprocess.run(prestop, capture_output=True, text=True, timeout=400,
                         env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stdout + out.stderr
    probe = r0["c"]["readinessProbe"]["httpGet"]["path"]
    assert http(f"http://127.0.0.1:{r0['http']}{probe}")[0] == 503, "still ready while evacuating"

    def state():
        _, body = http(f"http://127.0.0.1:{r0['http']}/api/v5/load_rebalance/status", auth=basic)
        return json.loads(body or "{}").get("state")

    if waits:
        assert state() == "prohibiting", state()
        # A second run (a hook after an evacuation started by hand) is not an error.
        again = subprocess.run(prestop, capture_output=True, text=True, timeout=400,
                               env={"PATH": "/usr/bin:/bin"})
        assert again.returncode == 0, "again: " + again.stdout + again.stderr
    else:
        wait_for("the evacuated node reaches prohibiting", lambda: state() == "prohibiting",
                 deadline=120, cluster=cl)
    print("run_rendered: the preStop command evacuated its own pod (readiness 503, prohibiting)")


def check(cl):
    check_cores(cl)
    cl.start_replicants()
    check_replicants(cl)
    check_tls(cl)
    bootstrap = (cl.secret_files["meshmq-api-keys"] / "replicant-bootstrap").read_text().strip()
    basic = "Basic " + b64encode(bootstrap.encode()).decode()
    check_login(cl, basic)
    check_prestop(cl, basic)


def main():
    rendered, bin_dir = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp(prefix="meshmq-run-rendered-")
    keep = os.environ.get("MESHMQ_RUN_RENDERED_KEEP") == "1"
    cl = Cluster(rendered, bin_dir, work)
    failure = None
    try:
        cl.secrets()
        cl.start_cores()
        check(cl)
    except (AssertionError, OSError, KeyError, ValueError, subprocess.SubprocessError) as e:
        failure = f"{type(e).__name__}: {e}" if not isinstance(e, AssertionError) else str(e)
    finally:
        # Every process started here stops, whatever happened.
        cl.stop()
    if failure is not None:
        where = f"logs in {work}" if keep else "MESHMQ_RUN_RENDERED_KEEP=1 keeps the logs"
        print(f"run_rendered: FAILED: {failure} ({where})", file=sys.stderr)
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    if failure is None:
        print("run_rendered: ok")
    return 0 if failure is None else 1


if __name__ == "__main__":
    sys.exit(main())
