# dpool demo image: the broker, the worker daemon, the `dpool` CLI, libdpool and the seed
# programs, built with CMake on Debian bookworm and run as a non-root user.
#   docker build -t dpool .
#   docker compose up --scale worker=3        (see docker-compose.yml, docs/OPERATIONS.md)

# ---- build stage: compilers and -dev packages, thrown away afterwards ----------------
FROM debian:bookworm-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential cmake pkg-config \
        libzmq3-dev libczmq-dev libmsgpack-dev libjansson-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# No tests in the image (criterion is not installed); the examples are built but not
# installed by CMake, so the seed programs are copied next to the tools by hand.
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDPOOL_TESTS=OFF \
        -DCMAKE_INSTALL_PREFIX=/usr/local \
    && cmake --build /build -j"$(nproc)" \
    && DESTDIR=/stage cmake --install /build \
    && install -m 0755 /build/bin/seed_pool /build/bin/seed_apply /stage/usr/local/bin/

# ---- runtime stage: only the shared libraries the binaries load ---------------------
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libzmq5 libczmq4 libmsgpackc2 libjansson4 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /stage/usr/local/ /usr/local/
RUN ldconfig \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin dpool
USER dpool
# The broker's port (docs/OPERATIONS.md). Workers and clients only connect out.
EXPOSE 5555
# Overridden per service in docker-compose.yml; alone, the image shows the CLI's help.
CMD ["dpool", "--help"]
