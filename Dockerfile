# A container image of the engine with its built-in plugins:
#   docker build -t hookline .
#   docker run -p 4665:4665 -v hookline-data:/var/lib/hookline hookline
# The first start prints the admin key once and writes it to
# /var/lib/hookline/admin.key.

FROM rust:1.95-bookworm AS build
# libpq for the PostgreSQL store; the wasm32-wasip2 target for the plugins
# (the build would add it itself; doing it here keeps it in a cached layer).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq-dev \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p hookline \
 && cp target/release/hookline /usr/local/bin/hookline

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/hookline hookline \
 && mkdir -p /var/lib/hookline \
 && chown hookline /var/lib/hookline
COPY --from=build /usr/local/bin/hookline /usr/local/bin/hookline
USER hookline
ENV HOOKLINE_DATA_DIR=/var/lib/hookline \
    HOOKLINE_LISTEN=0.0.0.0:4665 \
    HOOKLINE_LOG_FORMAT=json
VOLUME /var/lib/hookline
EXPOSE 4665
# SIGTERM (docker stop) drains in-flight deliveries for up to 20 s: give
# `docker stop -t 30` or a matching terminationGracePeriodSeconds.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/hookline"]
CMD ["serve"]
