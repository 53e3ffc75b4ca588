# An image that runs kiln in a CI job: the same install steps as `make demo`.
# The job needs /dev/kvm passed through for speed; without it kiln falls back to TCG.
FROM swift:6.3-bookworm AS build
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      make libarchive-dev libsqlite3-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN swift build -c release --static-swift-stdlib

FROM debian:bookworm-slim
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      qemu-system-x86 qemu-utils mmdebstrap e2fsprogs openssh-client libarchive13 libsqlite3-0 \
      zstd ca-certificates uidmap && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/.build/release/kiln /usr/local/bin/kiln
ENV KILN_HOME=/var/lib/kiln
VOLUME /var/lib/kiln
ENTRYPOINT ["kiln"]
