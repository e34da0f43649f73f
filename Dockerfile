# syntax=docker/dockerfile:1
# herald node image: a static binary on distroless, running as non-root.
#   docker build -t herald .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY pkg ./pkg
COPY internal ./internal
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/herald ./cmd/server

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="herald" \
      org.opencontainers.image.description="Push cluster: WebSocket clients by key on any node, HTTP sends from any node" \
      org.opencontainers.image.source="https://github.com/herald-push/herald" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/herald /herald
USER 65532:65532
EXPOSE 8080
# In a container the node must listen beyond loopback, which herald only
# allows with API keys and a token key configured (or --insecure).
ENV HERALD_LISTEN=0.0.0.0:8080
ENTRYPOINT ["/herald"]
