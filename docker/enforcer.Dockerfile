# The Interlock enforcer (`interlock serve`) and the `interlock` command.
# Build context: the repository root (see /.dockerignore), e.g.
#   docker build -f docker/enforcer.Dockerfile -t interlock-enforcer .
#
# It runs as root because Kubernetes and Docker grant added capabilities (CAP_BPF, CAP_NET_ADMIN,
# ...) to root only; the DaemonSet and the compose file drop every other capability.
FROM rust:1.95-bookworm AS build
# clang and libbpf's headers compile the eBPF programs (enforcer/build.rs); an image must never
# ship an observe-only enforcer by accident, so their build is required here.
RUN apt-get update && apt-get install -y --no-install-recommends clang libbpf-dev \
    && rm -rf /var/lib/apt/lists/*
ENV INTERLOCK_BPF_REQUIRED=1
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p interlock-enforcer

FROM gcr.io/distroless/cc-debian12
COPY --from=build /src/target/release/interlock /usr/local/bin/interlock
EXPOSE 9090
VOLUME ["/var/lib/interlock"]
ENTRYPOINT ["/usr/local/bin/interlock"]
CMD ["serve", "--listen", "0.0.0.0:9090", "--data-dir", "/var/lib/interlock"]
