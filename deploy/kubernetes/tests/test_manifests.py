"""The graph of meshmq's Kubernetes manifests, as rendered by `kubectl kustomize`.

Run by scripts/check-kubernetes, which renders the base and every overlay into
MESHMQ_K8S_RENDERED (a directory of `<name>.yaml` files, one per rendering) and points
MESHMQ_K8S_DIR at the kustomize tree. Without them, the test renders deploy/kubernetes
itself with kubectl (skipped when kubectl is missing).

What it holds the manifests to (schema validity is kubernetes-validate's job):
- the replicants' preStop hook is the evacuate-and-wait command against the pod's own API,
  with the API key file the node bootstraps, and the grace period outlasts its wait;
- the node name is the pod name, the peer address the pod IP;
- readiness is the availability check on the HTTP API port, liveness a cheap open route;
- the cores: a StatefulSet with volume claims and a headless service, ids from the pod
  index, initial members and advertised addresses from the pods' stable DNS names;
- PodDisruptionBudgets, the HPA's CPU and meshmq_connections metrics (and the adapter rule
  that serves the latter), Services that select pods and named ports that exist;
- every pod non-root, read-only root file system, no capabilities, seccomp RuntimeDefault,
  with requests and limits.
"""

import os
import re
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
K8S_DIR = Path(os.environ.get("MESHMQ_K8S_DIR", HERE.parent))
REPO = HERE.parents[2]

AVAILABILITY_CHECK = "/api/v5/load_rebalance/availability_check"
BINARY = "/usr/local/bin/replicant-node"
CORE_QUIC_PORT = 4370


def render_all():
    """{name: [objects]} for every rendering: from MESHMQ_K8S_RENDERED, or kubectl."""
    rendered = os.environ.get("MESHMQ_K8S_RENDERED")
    texts = {}
    if rendered:
        for f in sorted(Path(rendered).glob("*.yaml")):
            texts[f.stem] = f.read_text()
    else:
        if shutil.which("kubectl") is None:
            raise unittest.SkipTest("kubectl not found and MESHMQ_K8S_RENDERED not set")
        overlays = sorted(p for p in (K8S_DIR / "overlays").iterdir() if p.is_dir())
        dirs = [K8S_DIR / "base"] + overlays
        for d in dirs:
            out = subprocess.run(["kubectl", "kustomize", str(d)], check=True,
                                 capture_output=True, text=True)
            texts[d.name] = out.stdout
    if not texts:
        raise AssertionError("no rendered manifests found")
    return {name: [o for o in yaml.safe_load_all(t) if o] for name, t in texts.items()}


def one(objs, kind, name):
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    if len(found) != 1:
        raise AssertionError(f"expected one {kind} {name}, found {len(found)}")
    return found[0]


def of_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def container(workload, name):
    cs = [c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    if len(cs) != 1:
        raise AssertionError(f"{workload['metadata']['name']}: no container {name}")
    return cs[0]


def env_of(objs, c):
    """The container's environment: its envFrom ConfigMaps, then its own env (values only;
    valueFrom entries map to their source dict)."""
    env = {}
    for src in c.get("envFrom", []):
        ref = src.get("configMapRef")
        if ref:
            env.update(one(objs, "ConfigMap", ref["name"])["data"])
    for e in c.get("env", []):
        env[e["name"]] = e["value"] if "value" in e else e["valueFrom"]
    return env


def port_number(c, port):
    """A probe's or Service's port (a number or a container port's name) as a number."""
    if isinstance(port, int):
        return port
    for p in c.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    raise AssertionError(f"container {c['name']} has no port named {port!r}")


def bind_port(addr):
    return int(addr.rsplit(":", 1)[1])


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def mount_for(c, path):
    """The volume mount that holds `path` (the longest mount path that is a prefix)."""
    best = None
    for m in c.get("volumeMounts", []):
        mp = m["mountPath"].rstrip("/")
        if path == mp or path.startswith(mp + "/"):
            if best is None or len(mp) > len(best["mountPath"].rstrip("/")):
                best = m
    return best


def volume(workload, name):
    """The pod volume `name`, or the StatefulSet volume claim template of that name."""
    vs = [v for v in workload["spec"]["template"]["spec"].get("volumes", []) if v["name"] == name]
    vs += [{"name": name, "persistentVolumeClaim": t["spec"]}
           for t in workload["spec"].get("volumeClaimTemplates", [])
           if t["metadata"]["name"] == name]
    if len(vs) != 1:
        raise AssertionError(f"{workload['metadata']['name']}: no volume {name}")
    return vs[0]


def secret_key_at(workload, c, path):
    """(secret name, key) behind the file `path` in container `c`."""
    m = mount_for(c, path)
    if m is None:
        raise AssertionError(f"{path} is on no volume mount")
    v = volume(workload, m["name"])
    if "secret" not in v:
        raise AssertionError(f"{path} is not from a Secret")
    rel = m.get("subPath") or path[len(m["mountPath"].rstrip("/")) + 1:]
    items = v["secret"].get("items")
    if items:
        keys = [i["key"] for i in items if i["path"] == rel]
        if not keys:
            raise AssertionError(f"{path}: the Secret volume has no item at {rel}")
        return v["secret"]["secretName"], keys[0]
    return v["secret"]["secretName"], rel


def secret_keys_of_mount(workload, m):
    """(secret name, key) of every Secret key the mount `m` exposes (projected too)."""
    v = volume(workload, m["name"])
    sources = []
    if "secret" in v:
        sources = [v["secret"]]
    elif "projected" in v:
        sources = [s["secret"] for s in v["projected"].get("sources", []) if "secret" in s]
    out = []
    for s in sources:
        items = s.get("items")
        if items:
            paths = {i["path"]: i["key"] for i in items}
        else:
            # Without items, every key of the Secret: the cluster CA Secret holds ca.key.
            paths = None
        if "subPath" in m:
            if paths is None:
                out.append((s["secretName"], m["subPath"]))
            elif m["subPath"] in paths:
                out.append((s["secretName"], paths[m["subPath"]]))
        elif paths is None:
            out.append((s["secretName"], "*"))
        else:
            out += [(s["secretName"], k) for k in paths.values()]
    return out


class Manifests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.renders = render_all()

    def each(self):
        return self.renders.items()

    # -- replicants -------------------------------------------------------------------

    def replicant(self, objs):
        d = one(objs, "Deployment", "meshmq-replicant")
        return d, container(d, "replicant")

    def test_prestop_is_evacuate_and_wait_on_the_pods_own_api(self):
        for name, objs in self.each():
            with self.subTest(rendering=name):
                d, c = self.replicant(objs)
                env = env_of(objs, c)
                cmd = c["lifecycle"]["preStop"]["exec"]["command"]
                self.assertEqual(cmd[:2], [BINARY, "ctl"])
                args = cmd[2:]
                api = args[args.index("--api") + 1]
                host, port = api.rsplit(":", 1)
                self.assertEqual(host, "127.0.0.1", "the hook must evacuate this pod's own node")
                self.assertEqual(int(port), bind_port(env["MESHMQ_LISTENERS__HTTP_BIND"]))
                i = args.index("rebalance")
                self.assertEqual(args[i:i + 3], ["rebalance", "start", "--evacuation"])
                wait = int(args[args.index("--wait-done") + 1])
                self.assertGreater(wait, 0)
                self.assertGreater(d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
                                   wait, "the grace period must outlast the evacuation wait")
                # The node leaves the endpoints before it starts closing clients.
                probe = c["readinessProbe"]
                unready_after = probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
                health_wait = int(args[args.index("--wait-health-check") + 1])
                self.assertGreater(health_wait, unready_after,
                                   "clients would be closed while the pod still gets new ones")
                # Hooks get no $(VAR) expansion: a --node argument would be taken literally.
                self.assertNotIn("--node", args)
                self.assertFalse(any("$(" in a for a in cmd), cmd)
                # The key the hook sends is the one the node bootstraps, from the same Secret.
                key_file = args[args.index("--api-key-file") + 1]
                self.assertEqual(key_file, env["MESHMQ_API_KEY__BOOTSTRAP_FILE"])
                secret_key_at(d, c, key_file)

    def test_node_name_is_the_pod_name_and_peer_address_the_pod_ip(self):
        for name, objs in self.each():
            with self.subTest(rendering=name):
                _, c = self.replicant(objs)
                env = env_of(objs, c)
                self.assertEqual(env["POD_NAME"], {"fieldRef": {"fieldPath": "metadata.name"}})
                self.assertEqual(env["MESHMQ_NODE__NAME"], "$(POD_NAME)")
                self.assertEqual(env["POD_IP"], {"fieldRef": {"fieldPath": "status.podIP"}})
                self.assertEqual(env["MESHMQ_CLUSTER__PEER_BIND"], "$(POD_IP):5370")
                names = [e["name"] for e in c["env"]]
                self.assertLess(names.index("POD_NAME"), names.index("MESHMQ_NODE__NAME"))
                self.assertLess(names.index("POD_IP"), names.index("MESHMQ_CLUSTER__PEER_BIND"))
                self.assertEqual(port_number(c, "peer"), 5370)

    def test_readiness_is_the_availability_check_on_the_api_port(self):
        for name, objs in self.each():
            with self.subTest(rendering=name):
                _, c = self.replicant(objs)
                env = env_of(objs, c)
                probe = c["readinessProbe"]["httpGet"]
                self.assertEqual(probe["path"], AVAILABILITY_CHECK)
                self.assertEqual(port_number(c, probe["port"]),
                                 bind_port(env["MESHMQ_LISTENERS__HTTP_BIND"]))
                live = c["livenessProbe"]["httpGet"]
                self.assertIn(live["path"], ("/api/v5/status", "/health"))
                self.assertNotEqual(live["path"], AVAILABILITY_CHECK,
                                    "an evacuating node must not be restarted")

    def test_the_autoscaler_owns_the_replicant_count(self):
        for name, objs in self.each():
            with self.subTest(rendering=name):
                d, _ = self.replicant(objs)
                self.assertNotIn("replicas", d["spec"], "apply would reset the HPA's count")

    def test_rolling_update_brings_new_replicants_up_first(self):
        for name, objs in self.each():
            with self.subTest(rendering=name):
                d, _ = self.replicant(objs)
                ru = d["spec"]["strategy"]["rollingUpdate"]
                self.assertEqual(ru["maxUnavailable"], 0)
                self.assertGreaterEqual(int(ru["maxSurge"]), 1)

    def test_services_and_budgets_cover_both_upgrade_tracks(self):
        # The each-client-once upgrade runs a second Deployment (another track) beside the
        # first: the Deployment's selector names its track, nothing else may.
        for name, objs in self.each():
            with self.subTest(rendering=name):
                d, _ = self.replicant(objs)
                self.assertIn("meshmq.io/track", d["spec"]["selector"]["matchLabels"])
                for svc in of_kind(objs, "Service"):
                    self.assertNotIn("meshmq.io/track", svc["spec"].get("selector", {}))
                for pdb in of_kind(objs, "PodDisruptionBudget"):
                    self.assertNotIn("meshmq.io/track", pdb["spec"]["selector"]["matchLabels"])

    def test_replicants_follow_the_cores_headless_service(self):
        for name, objs in self.each():
            with self.subTest(rendering=name):
                _, c = self.replicant(objs)
                env = env_of(objs, c)
                cores = yaml.safe_load(env["MESHMQ_CLUSTER__CORES"])
                self.assertTrue(cores)
                sts = one(objs, "StatefulSet", "meshmq-core")
                svc = one(objs, "Service", sts["spec"]["serviceName"])
                for addr in cores:
                    host, port = addr.rsplit(":", 1)
                    self.assertEqual(host.split(".")[0], svc["metadata"]["name"])
                    self.assertEqual(int(port), CORE_QUIC_PORT)

    def test_cluster_certificates_come_from_the_ca_secret(self):
        for name, objs in self.each():
            with self.subTest(rendering=name):
                d, c = self.replicant(objs)
                sts = one(objs, "StatefulSet", "meshmq-core")
                core = container(sts, "core")
                dirs = [(d, c, env_of(objs, c)["MESHMQ_CLUSTER__CERTS_DIR"], "$(POD_NAME)"),
                        (sts, core, env_of(objs, core)["MESHMQ_CORE__CERTS_DIR"],
                         "core-$(MESHMQ_CORE__NODE_ID)")]
                for w, ctr, certs, node in dirs:
                    self.assertEqual(secret_key_at(w, ctr, f"{certs}/ca.pem"),
                                     ("meshmq-cluster-ca", "ca.pem"))
                    # The certificate is there: a writable emptyDir the init container fills.
                    m = mount_for(ctr, f"{certs}/node.pem")
                    self.assertIn("emptyDir", volume(w, m["name"]))
                    # One init container issues it with the CA key, into the same volume.
                    inits = [i for i in w["spec"]["template"]["spec"].get("initContainers", [])
                             if i.get("args", [])[:1] == ["gen-certs"]]
                    self.assertEqual(len(inits), 1, "one gen-certs init container")
                    ic = inits[0]
                    self.assertEqual(ic["command"], ["/usr/local/bin/core-node"])
                    self.assertEqual(ic["image"], ctr["image"])
                    self.assertEqual(ic["args"], ["gen-certs", "--out", certs, "--nodes", node])
                    for f in ("ca.pem", "ca.key"):
                        self.assertEqual(secret_key_at(w, ic, f"{certs}/{f}"),
                                         ("meshmq-cluster-ca", f))
                    im = mount_for(ic, f"{certs}/node.pem")
                    self.assertEqual(im["name"], m["name"])
                    self.assertFalse(im.get("readOnly", False))
                    if node == "$(POD_NAME)":
                        env = {e["name"]: e for e in ic.get("env", [])}
                        self.assertEqual(env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"],
                                         "metadata.name")

    def test_no_long_running_container_mounts_the_ca_key(self):
        """ca.key reaches init containers only: never a container that keeps running."""
        for name, objs in self.each():
            with self.subTest(rendering=name):
                for w in of_kind(objs, "Deployment") + of_kind(objs, "StatefulSet"):
                    spec = w["spec"]["template"]["spec"]
                    for c in spec["containers"]:
                        for m in c.get("volumeMounts", []):
                            for secret, key in secret_keys_of_mount(w, m):
                                self.assertFalse(
                                    key == "ca.key" or (secret == "meshmq-cluster-ca"
                                                        and key != "ca.pem"),
                                    f"{w['metadata']['name']}/{c['name']} mounts "
                                    f"{secret}/{key} at {m['mountPath']}")

    def test_http_ports_take_only_the_clusters_pods_and_labelled_namespaces(self):
        for name, objs in self.each():
            with self.subTest(rendering=name):
                pols = {p["metadata"]["name"]: p for p in of_kind(objs, "NetworkPolicy")}
                for pol, port in (("meshmq-core", 18084), ("meshmq-replicant", 18083)):
                    rules = [r for r in pols[pol]["spec"]["ingress"]
                             if any(p.get("port") == port for p in r.get("ports", []))
                             or not r.get("ports")]
                    self.assertTrue(rules, f"{pol}: nothing admits {port}")
                    for r in rules:
                        self.assertTrue(r.get("from"), f"{pol}: {port} open to every namespace")
                        for peer in r["from"]:
                            self.assertNotIn("ipBlock", peer)
                            ns = peer.get("namespaceSelector")
                            if ns is not None:
                                self.assertEqual(ns, {"matchLabels":
                                                      {"meshmq.io/api-access": "true"}})
                                self.assertNotIn("podSelector", peer)
                            else:
                                self.assertEqual(
                                    peer["podSelector"]["matchLabels"].get(
                                        "app.kubernetes.io/name"), "meshmq")

    # -- cores ------------------------------------------------------------------------

    def test_core_statefulset_claims_volumes_behind_a_headless_service(self):
        for name, objs in self.each():
            with self.subTest(rendering=name):
                sts = one(objs, "StatefulSet", "meshmq-core")
                spec = sts["spec"]
                self.assertEqual(spec["replicas"] % 2, 1, "an odd number of cores")
                self.assertEqual(spec["podManagementPolicy"], "Parallel")
                svc = one(objs, "Service", spec["serviceName"])
                self.assertEqual(svc["spec"]["clusterIP"], "None")
                self.assertTrue(svc["spec"]["publishNotReadyAddresses"])
                labels = spec["template"]["metadata"]["labels"]
                self.assertTrue(selects(svc["spec"]["selector"], labels))
                self.assertIn((CORE_QUIC_PORT, "UDP"),
                              [(p["port"], p["protocol"]) for p in svc["spec"]["ports"]])
                c = container(sts, "core")
                env = env_of(objs, c)
                claims = [t["metadata"]["name"] for t in spec["volumeClaimTemplates"]]
                m = mount_for(c, env["MESHMQ_CORE__DATA_DIR"])
                self.assertIsNotNone(m)
                self.assertIn(m["name"], claims, "the store must be on a volume claim")

    def test_core_ids_and_addresses_come_from_stable_pod_names(self):
        for name, objs in self.each():
            with self.subTest(rendering=name):
                sts = one(objs, "StatefulSet", "meshmq-core")
                spec = sts["spec"]
                start = spec["ordinals"]["start"]
                self.assertEqual(start, 1, "Raft ids start at 1: ordinal = id")
                c = container(sts, "core")
                env = env_of(objs, c)
                self.assertEqual(env["MESHMQ_CORE__NODE_ID"], {"fieldRef": {
                    "fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}})
                sts_name, svc = sts["metadata"]["name"], spec["serviceName"]
                self.assertEqual(env["MESHMQ_CORE__ADVERTISE"],
                                 f"$(POD_NAME).{svc}.$(POD_NAMESPACE).svc:{CORE_QUIC_PORT}")
                members = env["MESHMQ_CORE__INITIAL_MEMBERS"].split(",")
                want = [f"{i}={sts_name}-{i}.{svc}.$(POD_NAMESPACE).svc:{CORE_QUIC_PORT}"
                        for i in range(start, start + spec["replicas"])]
                self.assertEqual(members, want)
                self.assertEqual(bind_port(env["MESHMQ_CORE__BIND"]), CORE_QUIC_PORT)
                self.assertEqual(port_number(c, "quic"), CORE_QUIC_PORT)
                probe = c["readinessProbe"]["httpGet"]
                self.assertEqual(probe["path"], "/health")
                self.assertEqual(port_number(c, probe["port"]),
                                 bind_port(env["MESHMQ_CORE__HTTP_BIND"]))
                secret_key_at(sts, c, env["MESHMQ_CORE__API_KEY_FILE"])

    # -- disruption, scaling, services ----------------------------------------------

    def test_disruption_budgets(self):
        for name, objs in self.each():
            with self.subTest(rendering=name):
                pdbs = of_kind(objs, "PodDisruptionBudget")
                for workload, kind in (("meshmq-core", "StatefulSet"),
                                       ("meshmq-replicant", "Deployment")):
                    labels = one(objs, kind, workload)["spec"]["template"]["metadata"]["labels"]
                    mine = [p for p in pdbs
                            if selects(p["spec"]["selector"]["matchLabels"], labels)]
                    self.assertEqual(len(mine), 1, f"one PDB for {workload}")
                    self.assertEqual(mine[0]["spec"].get("maxUnavailable"), 1)

    def test_hpa_scales_replicants_on_cpu_and_connections(self):
        for name, objs in self.each():
            with self.subTest(rendering=name):
                hpa = one(objs, "HorizontalPodAutoscaler", "meshmq-replicant")
                self.assertEqual(hpa["apiVersion"], "autoscaling/v2")
                ref = hpa["spec"]["scaleTargetRef"]
                self.assertEqual((ref["kind"], ref["name"]), ("Deployment", "meshmq-replicant"))
                self.assertGreaterEqual(hpa["spec"]["minReplicas"], 2)
                metrics = hpa["spec"]["metrics"]
                cpu = [m for m in metrics if m["type"] == "Resource"
                       and m["resource"]["name"] == "cpu"]
                self.assertEqual(cpu[0]["resource"]["target"]["type"], "Utilization")
                conns = [m for m in metrics if m["type"] == "Pods"
                         and m["pods"]["metric"]["name"] == "meshmq_connections"]
                self.assertEqual(len(conns), 1)
                self.assertEqual(conns[0]["pods"]["target"]["type"], "AverageValue")
                down = hpa["spec"]["behavior"]["scaleDown"]["policies"]
                self.assertTrue(all(p["type"] == "Pods" and p["value"] == 1 for p in down),
                                "scale-in evacuates one pod at a time")

    def test_adapter_serves_the_hpa_metric_and_the_metric_exists(self):
        values = yaml.safe_load((K8S_DIR / "prometheus-adapter" / "values.yaml").read_text())
        names = [r["name"]["as"] for r in values["rules"]["custom"]]
        self.assertIn("meshmq_connections", names)
        metrics_rs = REPO / "shared" / "src" / "metrics.rs"
        if metrics_rs.exists():
            self.assertIn('"meshmq_connections"', metrics_rs.read_text())

    def test_services_select_pods_and_name_ports_that_exist(self):
        for name, objs in self.each():
            with self.subTest(rendering=name):
                pods = [(w, w["spec"]["template"]["metadata"]["labels"])
                        for w in of_kind(objs, "Deployment") + of_kind(objs, "StatefulSet")]
                for svc in of_kind(objs, "Service"):
                    targets = [w for w, labels in pods if selects(svc["spec"]["selector"], labels)]
                    self.assertEqual(len(targets), 1, svc["metadata"]["name"])
                    ctr = targets[0]["spec"]["template"]["spec"]["containers"][0]
                    for p in svc["spec"]["ports"]:
                        number = port_number(ctr, p.get("targetPort", p["port"]))
                        protos = [cp.get("protocol", "TCP") for cp in ctr["ports"]
                                  if cp["containerPort"] == number]
                        self.assertIn(p.get("protocol", "TCP"), protos, svc["metadata"]["name"])
                mqtt = one(objs, "Service", "meshmq-mqtt")
                self.assertIn(mqtt["spec"]["type"], ("LoadBalancer", "NodePort"))
                self.assertIn(1883, [p["port"] for p in mqtt["spec"]["ports"]])
                self.assertIn(8083, [p["port"] for p in mqtt["spec"]["ports"]])
                api = one(objs, "Service", "meshmq-api")
                self.assertEqual(api["spec"].get("type", "ClusterIP"), "ClusterIP")
                self.assertEqual([p["port"] for p in api["spec"]["ports"]], [18083])

    # -- every pod ----------------------------------------------------------------------

    def test_every_pod_is_locked_down_and_sized(self):
        for name, objs in self.each():
            with self.subTest(rendering=name):
                workloads = of_kind(objs, "Deployment") + of_kind(objs, "StatefulSet")
                self.assertEqual(len(workloads), 2)
                for w in workloads:
                    spec = w["spec"]["template"]["spec"]
                    psc = spec["securityContext"]
                    self.assertIs(psc["runAsNonRoot"], True)
                    self.assertNotEqual(psc.get("runAsUser", 65532), 0)
                    self.assertEqual(psc["seccompProfile"]["type"], "RuntimeDefault")
                    self.assertIs(spec.get("automountServiceAccountToken"), False)
                    for c in spec["containers"] + spec.get("initContainers", []):
                        sc = c["securityContext"]
                        self.assertIs(sc["readOnlyRootFilesystem"], True, c["name"])
                        self.assertIs(sc["allowPrivilegeEscalation"], False, c["name"])
                        self.assertIn("ALL", sc["capabilities"]["drop"], c["name"])
                        self.assertNotIn("add", sc["capabilities"], c["name"])
                        for part in ("requests", "limits"):
                            for res in ("cpu", "memory"):
                                self.assertIn(res, c["resources"][part], f"{c['name']} {part}")
                        for m in c.get("volumeMounts", []):
                            volume(w, m["name"])

    def test_replicant_queue_budget_fits_its_memory_limit(self):
        units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
        for name, objs in self.each():
            with self.subTest(rendering=name):
                _, c = self.replicant(objs)
                env = env_of(objs, c)
                limit = c["resources"]["limits"]["memory"]
                m = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", limit)
                self.assertIsNotNone(m, limit)
                limit_bytes = int(m.group(1)) * units[m.group(2)]
                budget = int(env["MESHMQ_MQTT__MAX_NODE_MQUEUE_BYTES"])
                self.assertLessEqual(budget, limit_bytes // 4,
                                     "mqtt.max_node_mqueue_bytes must fit the pod's memory")


class Dockerfile(unittest.TestCase):
    """The image the manifests run: its binaries, user and ports."""

    def setUp(self):
        path = Path(os.environ.get("MESHMQ_DOCKERFILE", REPO / "Dockerfile"))
        if not path.exists():
            self.skipTest(f"{path} not found")
        self.text = path.read_text()

    def test_runs_as_nonroot_with_the_three_binaries(self):
        users = re.findall(r"^USER\s+(\S+)", self.text, re.M)
        self.assertTrue(users and users[-1].split(":")[0] not in ("0", "root"))
        for b in ("core-node", "replicant-node", "loadtest"):
            self.assertIn(f"-p {b}", self.text)
        self.assertIn('ENTRYPOINT ["/usr/local/bin/replicant-node"]', self.text)

    def test_exposes_the_ports_the_manifests_use(self):
        exposed = set()
        for line in re.findall(r"^EXPOSE\s+(.*)$", self.text, re.M):
            exposed.update(line.split())
        for p in ("1883", "8883", "8083", "8084", "18083", "5370/udp", "4370/udp", "18084"):
            self.assertIn(p, exposed)


if __name__ == "__main__":
    unittest.main()
