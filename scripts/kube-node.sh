#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, from the binaries
# scripts/install-kube.sh and scripts/install-node.sh cache: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, containerd 2 with runc, a kubelet, CNI
# bridge networking (each pod its own network namespace) and kube-proxy (Services
# through iptables). No container registry: images are imported with
# `kube-node.sh load <oci-archive>`.
#
#   kube-node.sh up        start everything (stopping a previous node first) and wait
#                          until the node is Ready; prints the kubeconfig path last
#   kube-node.sh load F    import the OCI image archive F into the node's containerd
#   kube-node.sh down      stop everything and remove the node's state: containers,
#                          mounts, cgroups, the bridge, the iptables rules
#   kube-node.sh env       print NODE_DIR=, KUBECONFIG=, NODE_IP=, NODE_NAME= lines
#
# The node's state lives in $GOSIGHT_NODE_DIR (default /var/lib/gosight-node), logs
# in its logs/ directory. Needs root. Settings for this machine, each with its reason:
#   - cgroup driver cgroupfs: PID 1 is not systemd here;
#   - failCgroupV1: false: the machine mounts cgroups hybrid (v1 controllers),
#     which kubelet 1.36 refuses unless told;
#   - no CoreDNS: pods reach Services by the *_SERVICE_HOST/_PORT variables the
#     kubelet sets, and the host by its IP.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export GOSIGHT_CACHE_DIR=${GOSIGHT_CACHE_DIR:-$HOME/.cache/gosight}
STATE=${GOSIGHT_NODE_DIR:-/var/lib/gosight-node}
NODE_NAME=${GOSIGHT_NODE_NAME:-gosight-node}
API_PORT=16443
ETCD_PORT=12379
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.97.0.0/16
BRIDGE=gosight0
RUN=/run/gosight-node
SOCK=$RUN/containerd.sock
KUBELET_ROOT=$STATE/kubelet
log() { printf 'kube-node: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
[[ $(id -u) -eq 0 ]] || die "needs root"

node_ip() { ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -1; }

bins() {
    KUBE_DIR=$(bash scripts/install-kube.sh | tail -1)
    CTRD_DIR=$(bash scripts/install-node.sh | tail -1)
    export PATH=$CTRD_DIR:$KUBE_DIR:$PATH
}

kill_pidfile() { # name
    local f=$STATE/run/$1.pid pid
    [[ -f $f ]] || return 0
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}

start() { # name command...
    local name=$1
    shift
    mkdir -p "$STATE/run" "$STATE/logs"
    setsid "$@" >>"$STATE/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$STATE/run/$name.pid"
}

wait_until() { # seconds description command...
    local secs=$1 what=$2
    shift 2
    local end=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || return 1
        sleep 0.5
    done
    log "$what"
}

cert() { # name CN O [SANs] — signed by the node CA
    local name=$1 cn=$2 o=$3 san=${4:-}
    local pki=$STATE/pki
    openssl genrsa -out "$pki/$name.key" 2048 2>/dev/null
    local subj="/CN=$cn"
    [[ -n $o ]] && subj="/O=$o/CN=$cn"
    openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr" 2>/dev/null
    local ext=$pki/$name.ext
    {
        echo "basicConstraints=CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        if [[ -n $san ]]; then
            echo "extendedKeyUsage=serverAuth,clientAuth"
            echo "subjectAltName=$san"
        else
            echo "extendedKeyUsage=clientAuth"
        fi
    } >"$ext"
    openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
        -days 30 -extfile "$ext" -out "$pki/$name.crt" 2>/dev/null
}

kubeconfig() { # name cert
    cat >"$STATE/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: gosight
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $STATE/pki/ca.crt
users:
- name: $1
  user:
    client-certificate: $STATE/pki/$2.crt
    client-key: $STATE/pki/$2.key
contexts:
- name: gosight
  context: {cluster: gosight, user: $1}
current-context: gosight
EOF
}

pki() {
    local pki=$STATE/pki ip=$1
    mkdir -p "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -out "$pki/ca.crt" -days 30 \
        -subj "/CN=gosight-node-ca" 2>/dev/null
    cert apiserver kube-apiserver "" \
        "IP:127.0.0.1,IP:$ip,IP:${SERVICE_CIDR%.0/16}.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    cert admin kubernetes-admin system:masters
    cert kubelet "system:node:$NODE_NAME" system:nodes
    cert controller-manager system:kube-controller-manager ""
    cert scheduler system:kube-scheduler ""
    cert proxy system:kube-proxy ""
    openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
    openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
    kubeconfig admin admin
    kubeconfig kubelet kubelet
    kubeconfig controller-manager controller-manager
    kubeconfig scheduler scheduler
    kubeconfig proxy proxy
}

containerd_config() {
    mkdir -p "$STATE/containerd" "$STATE/cni/net.d" "$RUN"
    cat >"$STATE/containerd/config.toml" <<EOF
version = 3
root = "$STATE/containerd/root"
state = "$RUN/containerd-state"
[grpc]
  address = "$SOCK"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "registry.k8s.io/pause:3.10.1"
[plugins."io.containerd.cri.v1.runtime"]
  # This machine's root lacks CAP_SYS_RESOURCE: an oom_score_adj below the
  # runtime's own (the sandbox's -998) is refused, so it is clamped to it.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$STATE/cni/net.d"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
      BinaryName = "$CTRD_DIR/runc"
      SystemdCgroup = false
EOF
    cat >"$STATE/cni/net.d/10-gosight.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "gosight-pods",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}],
               "dataDir": "$STATE/cni/ipam"}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF
}

kubelet_config() {
    mkdir -p "$KUBELET_ROOT"
    cat >"$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$SOCK
address: $1
port: 10250
readOnlyPort: 0
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $STATE/pki/ca.crt}
authorization: {mode: AlwaysAllow}
tlsCertFile: $STATE/pki/apiserver.crt
tlsPrivateKeyFile: $STATE/pki/apiserver.key
staticPodPath: ""
podCIDR: $POD_CIDR
maxPods: 50
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
syncFrequency: 5s
fileCheckFrequency: 5s
nodeStatusUpdateFrequency: 5s
localStorageCapacityIsolation: false
# Every container under the runtime's default seccomp profile unless its pod says otherwise.
seccompDefault: true
EOF
}

proxy_config() {
    cat >"$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
clientConnection: {kubeconfig: $STATE/proxy.kubeconfig}
conntrack: {maxPerCore: 0}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
EOF
}

up() {
    down_quiet
    bins
    local ip
    ip=$(node_ip)
    [[ -n $ip ]] || die "no IPv4 address with a default route (the node IP)"
    mkdir -p "$STATE/logs" "$STATE/run"
    pki "$ip"
    sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1 ||
        die "cannot set the forwarding sysctls"

    start etcd etcd --name "$NODE_NAME" --data-dir "$STATE/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls http://127.0.0.1:12380 --initial-advertise-peer-urls http://127.0.0.1:12380 \
        --initial-cluster "$NODE_NAME=http://127.0.0.1:12380" --unsafe-no-fsync --log-level warn
    wait_until 60 "etcd is up" curl -sf "http://127.0.0.1:$ETCD_PORT/health" || die "etcd did not start: $(tail -5 "$STATE/logs/etcd.log")"

    start kube-apiserver kube-apiserver --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
        --bind-address 0.0.0.0 --advertise-address "$ip" --secure-port "$API_PORT" \
        --tls-cert-file "$STATE/pki/apiserver.crt" --tls-private-key-file "$STATE/pki/apiserver.key" \
        --client-ca-file "$STATE/pki/ca.crt" \
        --kubelet-client-certificate "$STATE/pki/admin.crt" --kubelet-client-key "$STATE/pki/admin.key" \
        --kubelet-certificate-authority "$STATE/pki/ca.crt" --kubelet-preferred-address-types InternalIP \
        --service-account-key-file "$STATE/pki/sa.pub" --service-account-signing-key-file "$STATE/pki/sa.key" \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-cluster-ip-range "$SERVICE_CIDR" --authorization-mode Node,RBAC \
        --enable-admission-plugins NodeRestriction,PodSecurity,MutatingAdmissionWebhook,ValidatingAdmissionWebhook \
        --profiling=false --v=1
    wait_until 120 "kube-apiserver is ready" kubectl --kubeconfig "$STATE/admin.kubeconfig" get --raw /readyz ||
        die "kube-apiserver did not become ready: $(tail -5 "$STATE/logs/kube-apiserver.log")"

    start kube-controller-manager kube-controller-manager --kubeconfig "$STATE/controller-manager.kubeconfig" \
        --authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
        --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
        --service-account-private-key-file "$STATE/pki/sa.key" --root-ca-file "$STATE/pki/ca.crt" \
        --use-service-account-credentials --bind-address 127.0.0.1 --secure-port 10257 \
        --controllers '*,-nodeipam,-cloud-node-lifecycle' --leader-elect=false --profiling=false --v=1
    start kube-scheduler kube-scheduler --kubeconfig "$STATE/scheduler.kubeconfig" \
        --authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
        --authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port 10259 --leader-elect=false --profiling=false --v=1

    containerd_config
    start containerd containerd --config "$STATE/containerd/config.toml"
    wait_until 60 "containerd is up" ctr --address "$SOCK" version || die "containerd did not start: $(tail -5 "$STATE/logs/containerd.log")"
    # The pod sandbox image: a static pause program, registry.k8s.io/pause under the
    # name containerd asks for (nothing is pulled).
    load "$(bash scripts/build-images.sh pause | tail -1)"

    kubelet_config "$ip"
    start kubelet kubelet --config "$STATE/kubelet.yaml" --kubeconfig "$STATE/kubelet.kubeconfig" \
        --root-dir "$KUBELET_ROOT" --hostname-override "$NODE_NAME" --node-ip "$ip" --v=1
    proxy_config
    start kube-proxy kube-proxy --config "$STATE/kube-proxy.yaml"
    local k=(kubectl --kubeconfig "$STATE/admin.kubeconfig")
    wait_until 180 "node $NODE_NAME is Ready" \
        "${k[@]}" wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s ||
        die "node did not become Ready: $(tail -20 "$STATE/logs/kubelet.log")"
    # The default ServiceAccount must exist before pods are created in a namespace.
    wait_until 60 "service accounts are being created" "${k[@]}" get serviceaccount default -n default ||
        die "controller-manager does not create service accounts: $(tail -20 "$STATE/logs/kube-controller-manager.log")"
    env_lines "$ip"
    printf '%s\n' "$STATE/admin.kubeconfig"
}

env_lines() {
    printf 'NODE_DIR=%s\nKUBECONFIG=%s\nNODE_IP=%s\nNODE_NAME=%s\nCTR_ADDRESS=%s\n' \
        "$STATE" "$STATE/admin.kubeconfig" "${1:-$(node_ip)}" "$NODE_NAME" "$SOCK"
}

load() { # oci-archive
    [[ -f $1 ]] || die "no image archive $1"
    ctr --address "$SOCK" -n k8s.io images import --no-unpack=false "$1" >&2 ||
        die "importing $1 into containerd failed"
    log "loaded $(basename "$1")"
}

down_quiet() {
    [[ -n ${CTRD_DIR:-} ]] || bins
    # Pods first, while the kubelet and containerd can still stop them.
    if [[ -f $STATE/admin.kubeconfig ]] && command -v kubectl >/dev/null 2>&1; then
        :
    fi
    kill_pidfile kube-proxy
    kill_pidfile kubelet
    kill_pidfile kube-scheduler
    kill_pidfile kube-controller-manager
    kill_pidfile kube-apiserver
    kill_pidfile etcd
    # Every container the node ran: their shims are containerd's children.
    if [[ -S $SOCK ]]; then
        local ctr_bin
        ctr_bin=$(command -v ctr || true)
        if [[ -n $ctr_bin ]]; then
            for t in $($ctr_bin --address "$SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
                $ctr_bin --address "$SOCK" -n k8s.io tasks kill -s KILL "$t" >/dev/null 2>&1 || true
            done
        fi
    fi
    kill_pidfile containerd
    pkill -KILL -f "containerd-shim-runc-v2 -namespace k8s.io -id .* -address $SOCK" 2>/dev/null || true
    # runc's leftovers, then every mount under the node's directories.
    if [[ -d $RUN ]]; then
        for c in $("$CTRD_DIR/runc" --root "$RUN/runc/k8s.io" list -q 2>/dev/null || true); do
            "$CTRD_DIR/runc" --root "$RUN/runc/k8s.io" delete -f "$c" >/dev/null 2>&1 || true
        done
    fi
    { grep -E " ($STATE|$RUN|/run/netns/cni-)" /proc/mounts || true; } | awk '{print $2}' | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    ip netns list 2>/dev/null | awk '/^cni-/ {print $1}' | while read -r ns; do ip netns delete "$ns" 2>/dev/null || true; done
    ip link delete "$BRIDGE" 2>/dev/null || true
    # kube-proxy's and the CNI plugins' rules.
    if command -v iptables-save >/dev/null 2>&1; then
        for t in nat filter mangle; do
            if iptables-save -t $t 2>/dev/null | grep -qE 'KUBE-|CNI-'; then
                iptables-save -t $t | grep -vE -- '-j (KUBE|CNI)-|^:(KUBE|CNI)-|-A (KUBE|CNI)-' | iptables-restore -T $t 2>/dev/null ||
                    log "warning: could not remove the $t table's kube rules"
            fi
        done
    fi
    # The pods' cgroups (empty now), deepest first.
    for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods; do
        [[ -d $c ]] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    rm -rf "$STATE" "$RUN"
}

case ${1:-} in
up) up ;;
down)
    down_quiet
    log "stopped; $STATE removed"
    ;;
load)
    shift
    bins
    for f in "$@"; do load "$f"; done
    ;;
env) env_lines ;;
*) die "usage: kube-node.sh up|down|load ARCHIVE...|env" ;;
esac
