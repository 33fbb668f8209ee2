# The hermes node, for docker-compose.yml (and any container platform).
#
#   docker build -t hermes:local .
#   docker run --rm -p 8080:8080 -p 9080:9080 hermes:local node
#
# Built with the project's own toolchain settings (protoc comes from a crate, see
# .cargo/config.toml), run as an unprivileged user with its data in /var/lib/hermes/data.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p hermes-node \
 && strip target/release/hermes

FROM debian:bookworm-slim
# ca-certificates: an OpenID Connect provider is reached over https.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/hermes --create-home hermes \
 && install -d -m 0700 -o hermes -g hermes /var/lib/hermes/data
COPY --from=build /src/target/release/hermes /usr/local/bin/hermes
USER hermes
WORKDIR /var/lib/hermes
# The data directory (a volume keeps it), and log lines as JSON for the container's collector.
ENV HERMES_NODE_DATA_DIR=/var/lib/hermes/data \
    HERMES_LOG_FORMAT=json
VOLUME ["/var/lib/hermes/data"]
# proxy, admin (API, UI, metrics, health), peer (raft), etcd endpoint
EXPOSE 8080 9080 9081 2379
STOPSIGNAL SIGTERM
ENTRYPOINT ["hermes"]
CMD ["node"]
