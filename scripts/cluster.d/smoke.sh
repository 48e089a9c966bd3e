# Sourced by `scripts/cluster smoke`: proves the cluster runs pods and Knative revisions.
#  1. an image pushed to the local registry, run by a plain Deployment, answers through its
#     Service's ClusterIP from the host;
#  2. the same image as a Knative Service: the revision gets Ready with the queue-proxy sidecar
#     and answers through the revision's private Kubernetes Service from the host;
#  3. what the Route does without a networking layer (printed, not asserted).
# Prints each step's time. Leaves namespace slipway-smoke in place (delete it with kubectl).
NS=slipway-smoke
t() { date +%s.%N; }
elapsed() { printf '%.1f' "$(echo "$(t) - $1" | bc)"; }
ok() { printf '  ok  %-58s %6ss\n' "$1" "$2"; }
fail() { printf '  FAIL %s\n' "$*" >&2; exit 1; }
command -v bc >/dev/null || apt_install bc

# The app: busybox httpd on $PORT (the Knative/Cloud Run contract), from the project's base image.
ctx="$(mktemp -d)"; trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/www"; echo "hello from slipway-cluster" >"$ctx/www/index.html"
cat >"$ctx/Dockerfile" <<'DF'
FROM slipway/busybox:1.35-bookworm
COPY www /www
USER 65532:65532
CMD ["sh", "-c", "exec httpd -f -v -p ${PORT:-8080} -h /www"]
DF
ref="$REG/slipway/smoke/hello:1"
s=$(t)
docker image inspect slipway/busybox:1.35-bookworm >/dev/null 2>&1 ||
  fail "no slipway/busybox:1.35-bookworm in Docker (./scripts/up makes it)"
DOCKER_BUILDKIT=0 docker build -q -t "$ref" "$ctx" >/dev/null 2>&1 || fail "docker build failed"
digest="$(docker push "$ref" | sed -n 's/.*digest: \(sha256:[0-9a-f]*\).*/\1/p')"
[ -n "$digest" ] || fail "push of $ref gave no digest"
image="$REG/slipway/smoke/hello@$digest"
ok "image pushed: $image" "$(elapsed "$s")"

kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
s=$(t)
kubectl -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: plain}
spec:
  replicas: 1
  selector: {matchLabels: {app: plain}}
  template:
    metadata: {labels: {app: plain}}
    spec:
      containers:
      - name: app
        image: $image
        env: [{name: PORT, value: "8080"}]
        ports: [{containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: plain}
spec:
  selector: {app: plain}
  ports: [{port: 80, targetPort: 8080}]
YAML
kubectl -n "$NS" rollout status deploy/plain --timeout 180s >/dev/null || {
  kubectl -n "$NS" get pods -o wide; kubectl -n "$NS" describe pods | tail -20; fail "Deployment not ready"; }
ip="$(kubectl -n "$NS" get svc plain -o jsonpath='{.spec.clusterIP}')"
body=""
for _ in $(seq 1 40); do body="$(curl -fsS --max-time 2 "http://$ip/" 2>/dev/null)" && break; sleep 0.5; done
[ "$body" = "hello from slipway-cluster" ] || fail "Service plain ($ip:80) answered '$body'"
ok "Deployment ready, Service ClusterIP $ip:80 answers" "$(elapsed "$s")"

s=$(t)
kubectl -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: hello}
spec:
  template:
    metadata:
      annotations: {autoscaling.knative.dev/min-scale: "1"}
    spec:
      containers:
      - image: $image
        ports: [{containerPort: 8080}]
YAML
rev=""
for _ in $(seq 1 120); do
  rev="$(kubectl -n "$NS" get ksvc hello -o jsonpath='{.status.latestCreatedRevisionName}' 2>/dev/null)"
  [ -n "$rev" ] && break; sleep 0.5
done
[ -n "$rev" ] || { kubectl -n "$NS" get ksvc hello -o yaml | tail -30; fail "no revision created"; }
kubectl -n "$NS" wait "revision/$rev" --for condition=Ready --timeout 300s >/dev/null || {
  kubectl -n "$NS" get revision "$rev" -o yaml | sed -n '/^status:/,$p'; kubectl -n "$NS" get pods -o wide
  fail "revision $rev not Ready"; }
pod="$(kubectl -n "$NS" get pods -l "serving.knative.dev/revision=$rev" -o jsonpath='{.items[0].metadata.name}')"
containers="$(kubectl -n "$NS" get pod "$pod" -o jsonpath='{.spec.containers[*].name}')"
[[ " $containers " == *" queue-proxy "* ]] || fail "pod $pod has no queue-proxy ($containers)"
ok "revision $rev Ready, pod $pod runs [$containers]" "$(elapsed "$s")"

s=$(t)
pip="$(kubectl -n "$NS" get svc "$rev-private" -o jsonpath='{.spec.clusterIP}')"
body=""
for _ in $(seq 1 40); do body="$(curl -fsS --max-time 2 "http://$pip/" 2>/dev/null)" && break; sleep 0.5; done
[ "$body" = "hello from slipway-cluster" ] || fail "private Service $rev-private ($pip:80) answered '$body'"
ok "revision's private Service $rev-private $pip:80 answers (via queue-proxy)" "$(elapsed "$s")"
pubip="$(kubectl -n "$NS" get svc "$rev" -o jsonpath='{.spec.clusterIP}')"
if body="$(curl -fsS --max-time 3 "http://$pubip/" 2>/dev/null)"; then
  ok "revision's public Service $rev $pubip:80 answers: $body" 0
else
  echo "  --  revision's public Service $rev ($pubip:80) does not answer"
fi

echo "Route and Ingress (no networking layer runs):"
kubectl -n "$NS" get ksvc,route,ingresses.networking.internal.knative.dev,sks 2>&1 | sed 's/^/    /'
kubectl -n "$NS" get route hello -o jsonpath='{range .status.conditions[*]}    {.type}={.status} {.reason}: {.message}{"\n"}{end}'
