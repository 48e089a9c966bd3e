module slipway.local/tools/istio

go 1.24

require istio.io/istio v0.0.0-20260827124520-eed52ebb66ad
