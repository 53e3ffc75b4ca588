# An image that runs kiln in a CI job. It builds kiln with the Makefile's one release recipe
# (make build-release, which make demo runs too), so what CI proves of that build holds here.
# The job needs /dev/kvm passed through for speed; without it kiln falls back to TCG.
FROM swift:6.3-bookworm AS build
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      make libarchive-dev libnbd-dev libsqlite3-dev zlib1g-dev libcurl4-openssl-dev libxml2-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make build-release

# What kiln runs beside it: the Makefile's DEB_PACKAGES, less the -dev packages (their runtime
# libraries instead), plus libcurl and libxml2, which Foundation's networking and XML parts load,
# ansible-core for ansible: steps, and git, from which builds record their origin commit.
# scripts/check-runtime-packages installs exactly this list into a fresh Debian tree and runs
# kiln in it (CI does, since docker does not run there): keep the list on this one line.
FROM debian:bookworm-slim
ARG RUNTIME_PACKAGES="qemu-system-x86 qemu-utils mmdebstrap e2fsprogs fdisk openssh-client libarchive13 libnbd0 libsqlite3-0 zlib1g libcurl4 libxml2 zstd ca-certificates uidmap gpgv debian-archive-keyring ansible-core git"
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $RUNTIME_PACKAGES \
      && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/.build/release/kiln /usr/local/bin/kiln
ENV KILN_HOME=/var/lib/kiln
VOLUME /var/lib/kiln
# No ENTRYPOINT: GitLab's docker executor runs a job's script through a shell in the image, and an
# entrypoint of kiln would receive that shell as its arguments (docs/ci.md).
CMD ["kiln", "--help"]
