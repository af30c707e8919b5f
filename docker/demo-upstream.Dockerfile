# The demo upstream (MCP server, CRM REST API, mock LLM, A2A agent) for the docker compose demo.
# Build context: the repository root (see /.dockerignore).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p interlock-demo-upstream

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/interlock-demo-upstream /usr/local/bin/interlock-demo-upstream
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/interlock-demo-upstream"]
CMD ["--listen", "0.0.0.0:8080"]
