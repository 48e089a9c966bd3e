module slipway.local/tools/knative-crds

go 1.24

require knative.dev/serving v0.50.0
