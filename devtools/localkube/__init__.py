"""Real Kubernetes on this machine, for the tests and `scripts/cluster`, from the binaries that
scripts/setup builds (scripts/setup.d/50-kube-apiserver.sh, 55-kube-node.sh) and Debian's etcd, runc
and CNI plugins. No Docker, no kind, no registry.

`KubeApi` is etcd + kube-apiserver on loopback: alone it is the API server of the k8s tests
(tests/kube_apiserver.py), where nothing happens on its own. `Node` adds a whole single-node
cluster around its own `KubeApi`: kube-controller-manager, kube-scheduler, containerd (runc), a
kubelet and kube-proxy, so pods really run and reach Services. Both run as children of the
caller, or detached (`scripts/cluster up|down|status`, the state in a JSON file) with the same code.

The kubelet on this machine's cgroups (cgroup v1 controllers, an empty cgroup2 hierarchy at
/sys/fs/cgroup/unified) works with ``failCgroupV1: false`` and ``cgroupDriver: cgroupfs``: see the
README section "A real single-node Kubernetes" for what was tried and why.

Everything one node owns is named after it, so two nodes (two test sessions) on one machine do
not meet: its directory, containerd's sockets and state, the kubelet's ports, the cgroup root
``/peregrine-<name>`` (a kubelet removes pod cgroups it does not know under its root), the CNI
bridge and subnet. The kernel settings the kubelet changes (``SYSCTLS``) are restored by the
`Node.close` of the last node.

Modules, in the order a node comes up: `procs` (starting, waiting for and stopping daemons),
`api` (etcd + kube-apiserver), `host` (what a node changes on the machine and takes back:
sysctls, cgroups, mounts, iptables chains), `pause` (the sandbox image), `node_config` (the
certificates and the containerd, CNI and kubelet configuration a node writes), `node` (the whole
node), `cli` (`scripts/cluster`).
"""
