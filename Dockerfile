# The operator image. `docker build -t ghcr.io/sessionops/session-operator:dev .`
#
# Where no container daemon runs, `make image-tar` builds the same image (the same static
# binary as /session-operator, user 65532:65532, the same entrypoint, on an empty base) as
# an OCI tarball with hack/imagetar.

FROM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN=local
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY main.go ./
COPY api/ api/
COPY controllers/ controllers/
COPY internal/ internal/
ARG TARGETOS=linux
ARG TARGETARCH
RUN GOOS=$TARGETOS GOARCH=$TARGETARCH go build -ldflags='-s -w' -o /out/session-operator . \
 && go version -m /out/session-operator | grep -q 'CGO_ENABLED=0'

# An empty base: the binary is static, talks to the apiserver with the service account's
# CA and to Redis in plain TCP, and needs no shell, libc, CA bundle or /etc/passwd.
FROM scratch
COPY --from=build /out/session-operator /session-operator
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/session-operator"]
