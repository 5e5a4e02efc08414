# sealmesh's image for those who build with Docker (docker build -t
# ghcr.io/sealmesh/sealmesh:dev .). make image builds the same image without
# a Docker daemon (go-containerregistry, build/image); both hold every
# binary, static, at the image's root, and run as nonroot unless the pod
# says otherwise (the chart runs the agent and the lighthouse as root).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
# go.mod replaces gopacket with this directory (third_party/gopacket).
COPY third_party/ third_party/
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=${VERSION}" -o /out/ \
    ./cmd/sealmesh-coordinator ./cmd/sealmesh-agent ./cmd/sealmesh-tunnel \
    ./cmd/sealmesh-cni ./cmd/sealmesh-lighthouse ./cmd/meshctl

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=
LABEL org.opencontainers.image.title="sealmesh" \
      org.opencontainers.image.description="Attested Nebula overlay network for Kubernetes pods and VMs: coordinator, node agent, CNI plugin, lighthouse, meshctl" \
      org.opencontainers.image.source="https://github.com/sealmesh/sealmesh" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/ /
USER 65532:65532
ENTRYPOINT ["/meshctl"]
