# The phantom-token plugin as a container image.
#
#   docker build -t tyk-phantom-token .
#   docker run --env-file .env -p 127.0.0.1:50051:50051 tyk-phantom-token
#
# Configuration comes from the environment only: the image holds no .env
# (.dockerignore keeps it out of the build context).

# --- Build ----------------------------------------------------------------------
# Rust 1.89 or newer: a dependency (zip 9) needs it. The image's gcc and libc6-dev
# are all the C toolchain aws-lc-sys needs: on x86_64 and aarch64 Linux it ships
# pregenerated bindings and builds with the cc crate, so neither cmake nor
# bindgen (libclang) is used. The protos are compiled in Rust (protox): no protoc.
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /build

# Dependencies first, in a layer of their own: with only the manifests, the
# build script and the protos, an empty crate compiles every dependency, and the
# layer stays cached until a manifest, Cargo.lock, build.rs or proto/ change.
# The workspace's other member, the benchmark tool, is never built here: its
# manifest (which Cargo.lock matches) and an empty main.rs only let the
# workspace load.
COPY Cargo.toml Cargo.lock build.rs ./
COPY bench/Cargo.toml bench/
COPY proto/ proto/
RUN mkdir src bench/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > bench/src/main.rs \
 && cargo build --release --locked --bin tyk-phantom-token \
 && rm -rf src

# The real sources. Their timestamps may be older than the placeholder's build:
# touch them so cargo rebuilds this crate. `check-api` compiles in the manifests
# of the shipped bundles, so manifest/ comes along.
COPY manifest/ manifest/
COPY src/ src/
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin tyk-phantom-token

# --- Runtime --------------------------------------------------------------------
# glibc, libgcc and CA certificates (for https:// introspection URLs); no shell,
# no package manager; runs as the unprivileged user nonroot (65532).
FROM gcr.io/distroless/cc-debian12:nonroot

COPY --from=builder /build/target/release/tyk-phantom-token /usr/local/bin/tyk-phantom-token

USER 65532:65532
EXPOSE 50051
# The plugin drains on SIGTERM for SHUTDOWN_GRACE_SECONDS (10 by default): give
# it longer than that before SIGKILL (docker stop -t, compose stop_grace_period).
STOPSIGNAL SIGTERM
# Asks the plugin's gRPC health service on 127.0.0.1 at PORT or LISTEN_ADDR.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/tyk-phantom-token", "health"]

ENTRYPOINT ["/usr/local/bin/tyk-phantom-token"]
CMD ["serve"]
