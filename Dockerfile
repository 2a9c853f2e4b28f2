# syntax=docker/dockerfile:1
# webhook-dispatcher: build with the Rust toolchain, run on distroless (glibc, CA
# certificates, no shell, non-root).
#   docker build -t registry.example.com/webhook-dispatcher:0.1.0 .

FROM rust:1.95-bookworm AS build
# librdkafka and OpenSSL are built from source (vendored): they need make, perl and a C compiler.
RUN apt-get update && apt-get install -y --no-install-recommends make perl cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The distribution profile (fat LTO), without debug info in the image's binary (the
# repository's profile keeps it for profiling).
ENV CARGO_PROFILE_DIST_DEBUG=0 CARGO_PROFILE_DIST_STRIP=symbols
# Dependencies first, so code changes do not rebuild them. Cargo refuses a manifest whose
# targets' files or path dependencies are missing: vendor/ holds the patched rdkafka-sys
# (vendor/rdkafka-sys/PATCHED.md) and every target gets a stub (scripts/validate-deploy checks
# both against Cargo.toml).
COPY Cargo.toml Cargo.lock ./
COPY vendor vendor
RUN mkdir -p src benches && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && for bench in pipeline stages allocations; do echo 'fn main() {}' > "benches/$bench.rs"; done \
    && cargo build --profile dist --locked \
    && rm -rf src benches
COPY config config
COPY src src
COPY benches benches
RUN touch src/main.rs src/lib.rs && cargo build --profile dist --locked --bin webhook-dispatcher \
    && cp target/dist/webhook-dispatcher /webhook-dispatcher

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /webhook-dispatcher /usr/local/bin/webhook-dispatcher
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/webhook-dispatcher"]
CMD ["run"]
