# Build: docker build -t cohort-connector .
FROM docker.io/library/golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binary: no libc needed at run time.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/cohort-connector ./cmd/cohort-connector

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/cohort-connector /usr/local/bin/cohort-connector
# Embedded-NATS storage when CONNECTOR_NATS_URL is empty.
ENV CONNECTOR_DATA_DIR=/var/lib/cohort-connector \
    CONNECTOR_LISTEN_ADDR=0.0.0.0:9464
VOLUME /var/lib/cohort-connector
EXPOSE 9464
# Numeric: a pod with runAsNonRoot can only verify a numeric user
# (distroless nonroot is 65532).
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/cohort-connector"]
