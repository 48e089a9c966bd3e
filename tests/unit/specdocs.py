"""The Service documents the spec tests share (test_spec_*.py): whole documents, and `edit`,
which changes one at a path for the failure tables. Nothing here is a test.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from pipeline.core.errors import InvalidSpec
from pipeline.spec import parse_service

MINIMAL = """
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
spec:
  template:
    spec:
      containers:
        - image: registry.localhost:5000/hello:1.0
"""

FULL = """
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello-api
  namespace: default
  labels:
    app: hello
  annotations:
    example.com/owner: team-a
spec:
  template:
    metadata:
      name: hello-api-00003
      labels:
        tier: web
      annotations:
        autoscaling.knative.dev/class: kpa.autoscaling.knative.dev
        autoscaling.knative.dev/metric: rps
        autoscaling.knative.dev/min-scale: "1"
        autoscaling.knative.dev/max-scale: "10"
        autoscaling.knative.dev/initial-scale: "2"
        autoscaling.knative.dev/target: "50"
        autoscaling.knative.dev/target-utilization-percentage: "80"
        autoscaling.knative.dev/window: 1m30s
        autoscaling.knative.dev/scale-down-delay: 5m
        example.com/note: kept as is
    spec:
      containerConcurrency: 20
      timeoutSeconds: 120
      containers:
        - name: app
          image: hello-api@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
          command: [/app/server]
          args: [--verbose]
          workingDir: /app
          env:
            - name: TARGET
              value: World
            - name: EMPTY
          ports:
            - name: h2c
              containerPort: 9000
          resources:
            limits: {cpu: "1", memory: 512Mi}
            requests: {cpu: 250m, memory: 256Mi}
          readinessProbe:
            httpGet: {path: /healthz, port: 9000}
            initialDelaySeconds: 1
            periodSeconds: 5
            timeoutSeconds: 2
            failureThreshold: 3
            successThreshold: 1
  traffic:
    - latestRevision: true
      percent: 80
    - revisionName: hello-api-00002
      percent: 20
      tag: previous
"""

# `kubectl get ksvc hello -o yaml`, as Knative's webhook and controller leave it.
PASTED = """
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  annotations:
    serving.knative.dev/creator: kubernetes-admin
    serving.knative.dev/lastModifier: kubernetes-admin
  creationTimestamp: "2024-03-01T10:00:00Z"
  generation: 1
  name: hello
  namespace: default
  resourceVersion: "1234"
  uid: 2d2b2a3c-7f0e-4b1f-9d59-0c6a1d1e5f00
spec:
  template:
    metadata:
      creationTimestamp: null
    spec:
      containerConcurrency: 0
      containers:
      - env:
        - name: TARGET
          value: World
        image: ghcr.io/knative/helloworld-go:latest
        name: user-container
        ports:
        - containerPort: 8080
          protocol: TCP
        readinessProbe:
          successThreshold: 1
          tcpSocket:
            port: 0
        resources: {}
      enableServiceLinks: false
      timeoutSeconds: 300
  traffic:
  - latestRevision: true
    percent: 100
status:
  address:
    url: http://hello.default.svc.cluster.local
  conditions:
  - lastTransitionTime: "2024-03-01T10:00:05Z"
    status: "True"
    type: Ready
  latestCreatedRevisionName: hello-00001
  latestReadyRevisionName: hello-00001
  observedGeneration: 1
  traffic:
  - latestRevision: true
    percent: 100
    revisionName: hello-00001
  url: http://hello.default.example.com
"""

SPLIT = """
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: shop
spec:
  template:
    spec:
      containers:
        - image: registry.localhost:5000/shop:2
  traffic:
    - tag: current
      revisionName: shop-00001
      percent: 50
    - tag: candidate
      revisionName: shop-00002
      percent: 50
    - tag: latest
      latestRevision: true
      percent: 0
    - tag: commit-abc1234
      revisionName: shop-00002
"""

CLUSTER_LOCAL = """
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: backend
  labels:
    networking.knative.dev/visibility: cluster-local
spec:
  template:
    spec:
      containers:
        - image: backend
"""

JSON_TEXT = json.dumps(yaml.safe_load(MINIMAL))

VALID = [
    pytest.param(MINIMAL, id="minimal"),
    pytest.param(FULL, id="full-featured"),
    pytest.param(PASTED, id="kubectl-get-ksvc-with-status"),
    pytest.param(SPLIT, id="traffic-split-with-tags"),
    pytest.param(CLUSTER_LOCAL, id="cluster-local"),
    pytest.param(JSON_TEXT, id="json-text"),
    pytest.param(MINIMAL.encode(), id="bytes"),
    pytest.param(yaml.safe_load(MINIMAL), id="loaded-dict"),
]


# --- editing a base document for the failure tables ---------------------------------------

DELETE = object()
_TOKEN = re.compile(r'\.?([A-Za-z_][\w]*)|\[(\d+)\]|\["([^"]+)"\]')


def _steps(path: str) -> list[str | int]:
    steps: list[str | int] = []
    for name, index, quoted in _TOKEN.findall(path):
        steps.append(int(index) if index else (name or quoted))
    return steps


def edit(*changes: tuple[str, object], base: str = MINIMAL) -> dict[str, Any]:
    """MINIMAL with values set (or DELETEd) at paths like `spec.traffic[0]["a/b"]`."""
    document: dict[str, Any] = yaml.safe_load(base)
    for path, value in changes:
        *parents, last = _steps(path)
        node: Any = document
        for step in parents:
            if isinstance(step, str) and step not in node:
                node[step] = {}
            node = node[step]
        if value is DELETE:
            del node[last]
        elif isinstance(node, list) and last == len(node):
            node.append(value)
        else:
            node[last] = value
    return document


C0 = "spec.template.spec.containers[0]"
SCALE = 'spec.template.metadata.annotations["autoscaling.knative.dev/'
SCALE_PATH = "spec.template.metadata.annotations.autoscaling.knative.dev/"


def assert_refused_at_its_path(source: str | dict[str, Any], expected: str) -> None:
    """`source` is refused with `expected`, its message starting at the path it names, in
    the spec's words (never pydantic's)."""
    with pytest.raises(InvalidSpec) as caught:
        parse_service(source)
    assert expected in str(caught.value)
    first_line = str(caught.value).splitlines()[0]
    assert first_line.startswith(caught.value.path)
    assert "pydantic" not in str(caught.value)
    assert "Input should" not in str(caught.value)
