# Sourced by `scripts/cluster smoke`: proves the cluster runs pods and Knative revisions.
#  1. an image pushed to the local registry, run by a plain Deployment, answers through its
#     Service's ClusterIP from the host;
#  2. the same image as a Knative Service: the revision gets Ready with the queue-proxy sidecar
#     and answers through the revision's private Kubernetes Service from the host;
#     and through its public Service (the activator, with the headers an ingress would set);
#  3. scale from zero: a revision with no pod answers a request through the activator;
#  4. what the Route does without a networking layer (printed, not asserted).
# Prints each step's time. Leaves its namespace slipway-smoke-HHMMSS in place for a look; the
# next run deletes it.
NS="slipway-smoke-$(date +%H%M%S)"
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
# sh stays PID 1 and exits on SIGTERM: busybox httpd as PID 1 would ignore it, and every pod
# would take its whole grace period (300 s for a revision) to go away.
CMD ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p ${PORT:-8080} -h /www & wait"]
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

# A fresh namespace each run, so the times are those of a first deploy; earlier runs' namespaces
# are deleted without waiting (a namespace takes a while to go).
for old in $(kubectl get ns -l dev.slipway.smoke=true -o name); do
  kubectl delete "$old" --wait=false >/dev/null 2>&1 || true
done
kubectl create namespace "$NS" >/dev/null
kubectl label namespace "$NS" dev.slipway.smoke=true >/dev/null
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
# The revision's public Service has the endpoints the SKS picks: the activator's (Proxy mode, the
# default while target-burst-capacity exceeds the spare capacity) or the pods' (Serve). The
# activator routes by the headers an ingress would set; without them it answers 404.
s=$(t)
pubip="$(kubectl -n "$NS" get svc "$rev" -o jsonpath='{.spec.clusterIP}')"
body="$(curl -fsS --max-time 5 --retry 20 --retry-delay 1 --retry-connrefused \
  -H "Knative-Serving-Namespace: $NS" -H "Knative-Serving-Revision: $rev" "http://$pubip/" 2>/dev/null)" || true
[ "$body" = "hello from slipway-cluster" ] || fail "public Service $rev ($pubip:80) answered '$body'"
ok "revision's public Service $rev $pubip:80 answers (SKS mode $(kubectl -n "$NS" get sks "$rev" -o jsonpath='{.spec.mode}'))" "$(elapsed "$s")"

# Scale from zero: a revision that starts with no pod (initial-scale 0, allowed by `up`), asked
# through its public Service: the activator holds the request, the autoscaler scales to 1.
s=$(t)
kubectl -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: zero}
spec:
  template:
    metadata:
      annotations: {autoscaling.knative.dev/initial-scale: "0"}
    spec:
      containers:
      - image: $image
        ports: [{containerPort: 8080}]
YAML
zrev=""
for _ in $(seq 1 120); do
  zrev="$(kubectl -n "$NS" get ksvc zero -o jsonpath='{.status.latestCreatedRevisionName}' 2>/dev/null)"
  [ -n "$zrev" ] && break; sleep 0.5
done
kubectl -n "$NS" wait "revision/$zrev" --for condition=Ready --timeout 180s >/dev/null ||
  fail "revision $zrev (initial scale 0) not Ready"
npods="$(kubectl -n "$NS" get pods -l "serving.knative.dev/revision=$zrev" --field-selector=status.phase=Running -o name | wc -l)"
ok "revision $zrev Ready with $npods pods" "$(elapsed "$s")"
s=$(t)
zip="$(kubectl -n "$NS" get svc "$zrev" -o jsonpath='{.spec.clusterIP}')"
# Retried for 30 s: right after the revision is made, kube-proxy may not have programmed its
# Service yet (refused), and the activator may not know the revision yet; what came back before
# the answer is printed.
seen=""
for _ in $(seq 1 30); do
  code="$(curl -sS -o "$ctx/body" -w '%{http_code}' --max-time 60 -H "Knative-Serving-Namespace: $NS" \
    -H "Knative-Serving-Revision: $zrev" "http://$zip/" 2>/dev/null)" || code="${code:-000}"
  [ "$code" = 200 ] && break
  seen="$seen $code:$(head -c 80 "$ctx/body" 2>/dev/null | tr '\n' ' ')"; sleep 1
done
[ "$code" = 200 ] && [ "$(cat "$ctx/body")" = "hello from slipway-cluster" ] ||
  fail "cold request to $zrev ($zip:80): $code $(cat "$ctx/body" 2>/dev/null); before:$seen"
ok "cold request through the activator to $zrev answered" "$(elapsed "$s")"
[ -z "$seen" ] || echo "      (answers before that:$seen)"

echo "Route and Ingress (no networking layer runs):"
kubectl -n "$NS" get ksvc,route,ingresses.networking.internal.knative.dev,sks 2>&1 | sed 's/^/    /'
kubectl -n "$NS" get route hello -o jsonpath='{range .status.conditions[*]}    {.type}={.status} {.reason}: {.message}{"\n"}{end}'
