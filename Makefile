# sealmesh — `make help` lists the targets.
GO      ?= go
BIN     := $(CURDIR)/bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# How every binary that runs on a node is built: static, without cgo, as the
# image ships them; make build and make demo run the same (test/tools does
# too, and TestBinariesStatic checks it).
STATIC_BUILD = CGO_ENABLED=0 $(GO) build -trimpath
CMDS    := sealmesh-coordinator sealmesh-agent sealmesh-tunnel sealmesh-cni sealmesh-lighthouse meshctl
# The reference CNI plugins, at the version go.mod pins (tool directives).
PLUGINS := github.com/containernetworking/plugins/plugins/main/bridge \
           github.com/containernetworking/plugins/plugins/ipam/host-local

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# External servers the tests run for real, built from their Go modules into
# .cache/bin (each in a small module of its own under tools/, so their
# dependencies stay out of sealmesh's go.mod).
TOOLS_BIN := $(CURDIR)/.cache/bin
export SEALMESH_TOOLS_BIN := $(TOOLS_BIN)

.PHONY: tools
tools: $(TOOLS_BIN)/etcd $(TOOLS_BIN)/kube-apiserver $(TOOLS_BIN)/kubectl $(TOOLS_BIN)/helm $(TOOLS_BIN)/nebula-cert $(TOOLS_BIN)/promtool ## build the servers and CLIs the tests use (etcd, kube-apiserver, kubectl, helm, nebula-cert, promtool) into .cache/bin

$(TOOLS_BIN)/etcd: tools/etcd/go.mod tools/etcd/main.go
	cd tools/etcd && $(GO) build -o $@ .

# kube-apiserver v1.34.2 from k8s.io/kubernetes: about 7 minutes cold on 2 cores.
KUBE_VERSION := v1.34.2
KUBE_LDFLAGS := -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34
$(TOOLS_BIN)/kube-apiserver: tools/kube/go.mod tools/kube/main.go
	cd tools/kube && $(GO) build -ldflags '$(KUBE_LDFLAGS)' -o $@ .

# The rest of a node for make e2e-k8s, and kubectl for the chart's tests:
# each a few minutes cold, cached in .cache/bin.
KUBE_CMDS := kubectl kubelet kube-controller-manager kube-scheduler kube-proxy
$(addprefix $(TOOLS_BIN)/,$(KUBE_CMDS)): tools/kube/go.mod
	cd tools/kube && CGO_ENABLED=0 $(GO) build -ldflags '$(KUBE_LDFLAGS)' -o $@ k8s.io/kubernetes/cmd/$(notdir $@)

# Stock nebula-cert at the version sealmesh links: meshctl verify's ca.crt
# must satisfy Nebula's own tool.
$(TOOLS_BIN)/nebula-cert: tools/nebula/go.mod
	cd tools/nebula && CGO_ENABLED=0 $(GO) build -o $@ github.com/slackhq/nebula/cmd/nebula-cert

# promtool checks the chart's alerting rules.
$(TOOLS_BIN)/promtool: tools/promtool/go.mod
	cd tools/promtool && CGO_ENABLED=0 $(GO) build -o $@ github.com/prometheus/prometheus/cmd/promtool

$(TOOLS_BIN)/coredns: tools/coredns/go.mod
	cd tools/coredns && CGO_ENABLED=0 $(GO) build -o $@ github.com/coredns/coredns

# helm renders for (and lints against) the Kubernetes version the tests run,
# as upstream's Makefile sets it.
HELM_LDFLAGS := -X helm.sh/helm/v3/internal/version.version=v3.22.0 \
	$(foreach p,pkg/chartutil pkg/lint/rules,-X helm.sh/helm/v3/$(p).k8sVersionMajor=1 -X helm.sh/helm/v3/$(p).k8sVersionMinor=34)
$(TOOLS_BIN)/helm: tools/helm/go.mod
	cd tools/helm && CGO_ENABLED=0 $(GO) build -ldflags '$(HELM_LDFLAGS)' -o $@ helm.sh/helm/v3/cmd/helm

# The plain manifests are the chart rendered with deploy/manifests/values.yaml
# (test/deploy checks they are in sync).
.PHONY: manifests
manifests: $(TOOLS_BIN)/helm ## render the Helm chart into deploy/manifests/sealmesh.yaml
	$(TOOLS_BIN)/helm template sealmesh deploy/helm/sealmesh --namespace sealmesh -f deploy/manifests/values.yaml > deploy/manifests/sealmesh.yaml

.PHONY: build
build: ## build the binaries into bin/ (static, as in the image)
	$(STATIC_BUILD) -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

# The image holds every binary, built static; make image writes it as an
# archive, IMAGE_LOAD=containerd imports it into the node's containerd
# (ctr; $$CONTAINERD_ADDRESS says where it listens). No Docker daemon: the
# image is assembled with go-containerregistry (build/image). The
# Dockerfile builds the same image for those who build with Docker.
IMAGE      ?= ghcr.io/sealmesh/sealmesh:$(VERSION)
IMAGE_LOAD ?=
.PHONY: image
image: ## build the sealmesh image (every binary, static, nonroot) into bin/sealmesh-image.tar; IMAGE=ref, IMAGE_LOAD=containerd imports it
	$(STATIC_BUILD) -ldflags '$(LDFLAGS)' -o $(BIN)/static/ $(addprefix ./cmd/,$(CMDS))
	$(GO) run ./build/image --bin $(BIN)/static --ref $(IMAGE) --out $(BIN)/sealmesh-image.tar \
		--version $(VERSION) --revision $$(git rev-parse HEAD 2>/dev/null) --created $$(git log -1 --format=%ct 2>/dev/null || echo 0) \
		$(if $(filter containerd,$(IMAGE_LOAD)),--load-containerd)

.PHONY: plugins
plugins: ## build the reference CNI plugins (bridge, host-local) into bin/
	$(STATIC_BUILD) -o $(BIN)/ $(PLUGINS)

.PHONY: check-host
check-host:
	@[ "$$(id -u)" = 0 ] || { echo "this target needs root (network namespaces, TUN devices): run it with sudo"; exit 1; }
	@[ -c /dev/net/tun ] || { echo "/dev/net/tun is missing: load the tun module (modprobe tun)"; exit 1; }

.PHONY: demo
demo: check-host build plugins ## (root) coordinator, lighthouse and two pods in netns, pinging over Nebula
	$(GO) build -o $(BIN)/sealmesh-demo ./test/demo
	$(BIN)/sealmesh-demo -bin $(BIN)

# Debian packages the tests run: nft for the reference portmap plugin's
# nftables backend (the CNI chaining test). Installed when root and missing.
.PHONY: deps
deps:
	@if [ "$$(id -u)" = 0 ] && ! command -v nft >/dev/null; then \
		echo "installing nftables (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nftables; \
	fi
	@if [ "$$(id -u)" = 0 ] && ! command -v ssh-agent >/dev/null; then \
		echo "installing openssh-client (apt-get): ssh-agent for the owner-key tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-client; \
	fi

# The agent's pod lifecycle, which make unit holds to a coverage floor
# with its tests that need no root (fakes for tunnels and namespaces, a real
# coordinator).
AGENT_LIFECYCLE := agent/node/node.go agent/node/renew.go agent/node/records.go agent/node/gc.go agent/node/server.go

.PHONY: unit
unit: ## the fast tier, no root and no built servers (go test -short; under two minutes warm), and the agent lifecycle's coverage floor
	@mkdir -p .cache
	$(GO) test -short -timeout 10m -coverprofile=.cache/unit.cover ./...
	$(GO) run ./test/coverfloor -profile .cache/unit.cover -min 60 $(AGENT_LIFECYCLE)

.PHONY: test
test: lint unit tools deps ## lint, the unit tier, then every test (e2e needs root; under CI=true it fails instead of skipping)
	$(GO) test -count=1 -timeout 30m ./...

# A single-node Kubernetes for make e2e-k8s: containerd and runc from
# Debian, the rest built from Go modules into .cache/bin.
.PHONY: deps-k8s
deps-k8s: deps
	@if [ "$$(id -u)" = 0 ] && ! { command -v containerd && command -v runc && command -v ctr; } >/dev/null; then \
		echo "installing containerd and runc (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends containerd runc; \
	fi
	@if [ "$$(id -u)" = 0 ] && ! [ -x /bin/busybox ]; then \
		echo "installing busybox-static (apt-get): the quickstart's workload pods' image"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static; \
	fi

.PHONY: e2e-k8s
e2e-k8s: check-host tools deps-k8s $(addprefix $(TOOLS_BIN)/,$(KUBE_CMDS) coredns) ## (root) sealmesh's Helm chart on a single-node Kubernetes built here; pods talk over Nebula
	SEALMESH_E2E_K8S=1 $(GO) test -count=1 -timeout 45m -v -run TestKubernetes ./test/k8s/

.PHONY: bench
bench: tools deps ## (root) run the benchmarks and write docs/BENCHMARKS.md and its plots
	@if ! command -v iperf3 >/dev/null; then \
		echo "installing iperf3 (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iperf3; \
	fi
	$(GO) run ./test/benchreport -out docs/BENCHMARKS.md -count 5 ./attest/=2000x ./ca/coordinator/=3x ./ca/issuer/=500x ./ca/ipam/=500x ./test/e2e/=1x ./test/ha/=1x ./test/dataplane/=1x ./agent/tundev/=1x

# Each fuzz target for FUZZTIME; `make test` runs their seed corpora (and
# testdata/fuzz beside them) as ordinary tests.
FUZZTIME ?= 30s
.PHONY: fuzz
fuzz: ## fuzz every decoder (packages fuzz, fuzz/state) for FUZZTIME each; a crasher lands in their testdata/fuzz
	@set -e; for p in ./fuzz/ ./fuzz/state/; do \
		for t in $$($(GO) test -list '^Fuzz' $$p | grep '^Fuzz'); do \
			echo "== $$p $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$p; \
		done; \
	done

.PHONY: lint
lint: ## gofmt, go vet and staticcheck
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

.PHONY: clean
clean: ## remove bin/
	rm -rf $(BIN)
