# kiln: two commands on a fresh Debian 12 machine with Swift 6.3 installed.
#   make demo   installs what is missing, builds kiln, builds examples/debian (3 images)
#   make test   the whole test suite (what .ci/run runs)

SWIFT      ?= swift
# The demo's store: $KILN_HOME, as kiln itself reads it (unset or empty: kiln's default).
DEMO_HOME  := $(or $(KILN_HOME),$(HOME)/.local/share/kiln)
SUDO       := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# What kiln needs on the host: QEMU, the base-image tools (mmdebstrap, and sfdisk and mkfs.ext4
# that lay out the bootable disk; docs/images.md), the SSH client, libraries it links
# (libcurl and libxml2 too: with the Swift runtime linked in, Foundation's networking and XML
# parts link them), gpgv and Debian's keyring for kiln refresh's signature checks, and curl,
# which examples/debian's tests fetch the site with from the host (docs/testing.md).
DEB_PACKAGES = qemu-system-x86 qemu-utils mmdebstrap e2fsprogs fdisk openssh-client curl \
               libarchive-dev libnbd-dev libsqlite3-dev zlib1g-dev libcurl4-openssl-dev libxml2-dev \
               zstd ca-certificates uidmap gpgv debian-archive-keyring

.PHONY: all deps test-deps build release build-release demo test test-fast lint format clean bench bench-quick bench-warm bench-export bench-remote bench-serve man install

all: build

# Installs the Debian packages given that are not installed yet.
define install-missing
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

deps:
	@command -v $(SWIFT) >/dev/null || { echo "kiln needs Swift 6.3 (https://swift.org/install); none on PATH" >&2; exit 1; }
	$(call install-missing,$(DEB_PACKAGES))

# What only the tests need: PostgreSQL (the catalog tests run on it too, in a throwaway
# server: scripts/test-postgres), what the refresh tests make apt repositories with (gpg, xz,
# dpkg-scanpackages), ansible-core for the ansible: step's tests, and the outside tools the export
# tests check artifacts with (skopeo, umoci, docker-registry, sfdisk from fdisk; OVMF, the UEFI
# firmware exported images boot under, cloud-localds for a cloud's NoCloud seed, curl; openssl
# makes the test PostgreSQL server's TLS certificates; chromium, headless, renders kiln serve's
# pages, with a font to draw their text). From PyPI
# (COMMAND:PACKAGE): check-jsonschema checks generated GitLab pipelines, pyspdxtools the SBOMs,
# moto_server stands in for EC2 in the aws provider's client tests, junitparser reads
# kiln build --junit's reports as CI systems do, schemathesis holds kiln serve's API to its
# OpenAPI document. Python modules (MODULE:PACKAGE): securesystemslib
# verifies kiln's DSSE-signed SLSA provenance as an outside verifier.
PYPI_TOOLS = check-jsonschema:check-jsonschema pyspdxtools:spdx-tools moto_server:moto[server] junitparser:junitparser \
             schemathesis:schemathesis
PYPI_MODULES = securesystemslib:securesystemslib[crypto]
test-deps: deps
	$(call install-missing,postgresql gnupg xz-utils dpkg-dev ansible-core skopeo umoci docker-registry fdisk busybox-static ovmf cloud-image-utils curl man-db openssl \
	  chromium fonts-dejavu-core)
	@# set -f: a package with extras (moto[server]) is a glob pattern to the shell, and would
	@# match a file named, say, motos in the current directory.
	@set -f; for tool in $(PYPI_TOOLS); do \
	  "$${tool%%:*}" --help >/dev/null 2>&1 && continue; \
	  python3 -m pip --version >/dev/null 2>&1 || { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-pip; }; \
	  python3 -m pip install -q "$${tool#*:}" 2>/dev/null || python3 -m pip install -q --break-system-packages "$${tool#*:}"; \
	done
	@set -f; for module in $(PYPI_MODULES); do \
	  python3 -c "import $${module%%:*}, cryptography" 2>/dev/null && continue; \
	  python3 -m pip --version >/dev/null 2>&1 || { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-pip; }; \
	  python3 -m pip install -q "$${module#*:}" 2>/dev/null || python3 -m pip install -q --break-system-packages "$${module#*:}"; \
	done

build: deps
	$(SWIFT) build

# The one release build: make demo runs it once deps are in, the Dockerfile's build stage and
# bench/ run it as it is. Every target builds, the test-support ones too, so nothing that only a
# test build compiles can break the product's build unnoticed (CI runs make demo).
# The Swift runtime is linked in: the binary runs on a host without a Swift toolchain.
build-release:
	$(SWIFT) build -c release --static-swift-stdlib

release: deps build-release

# make install [PREFIX=/usr/local] [DESTDIR=]: kiln on PATH, its man page (kiln(1), generated
# from the command-line parser by swift-argument-parser's generate-manual plugin) and its
# completions for bash, zsh and fish. The plugin reads the help of a debug build: its release
# build would use other flags than build-release and overwrite the static binary.
PREFIX  ?= /usr/local
BINDIR  := $(DESTDIR)$(PREFIX)/bin
SHAREDIR := $(DESTDIR)$(PREFIX)/share

man:
	mkdir -p .build/man
	$(SWIFT) package --allow-writing-to-directory .build/man generate-manual --configuration debug --output-directory .build/man

install: deps build-release man
	install -D -m 755 .build/release/kiln "$(BINDIR)/kiln"
	install -D -m 644 .build/man/kiln.1 "$(SHAREDIR)/man/man1/kiln.1"
	install -d "$(SHAREDIR)/bash-completion/completions" "$(SHAREDIR)/zsh/site-functions" "$(SHAREDIR)/fish/vendor_completions.d"
	.build/release/kiln --generate-completion-script bash > "$(SHAREDIR)/bash-completion/completions/kiln"
	.build/release/kiln --generate-completion-script zsh > "$(SHAREDIR)/zsh/site-functions/_kiln"
	.build/release/kiln --generate-completion-script fish > "$(SHAREDIR)/fish/vendor_completions.d/kiln.fish"
	@echo "installed kiln in $(BINDIR) (man kiln; completions for bash, zsh and fish)"

demo: release
	.build/release/kiln validate examples/debian
	.build/release/kiln plan examples/debian --home "$(DEMO_HOME)"
	.build/release/kiln build examples/debian --home "$(DEMO_HOME)"
	.build/release/kiln images --home "$(DEMO_HOME)"

# The whole suite: fast tests and real-VM builds, then the 10 slowest tests and each suite's
# time. The VM tests share one store: KILN_TEST_HOME when given (CI passes the store make demo
# filled), else a temporary one (scripts/run-tests).
test: test-deps
	$(SWIFT) build --build-tests
	SWIFT=$(SWIFT) scripts/run-tests

# Only the tests that need no VM (seconds).
test-fast: test-deps
	KILN_SKIP_VM_TESTS=1 scripts/test-postgres run $(SWIFT) test

lint:
	$(SWIFT) format lint --strict --recursive Package.swift Sources Tests bench/Sources

format:
	$(SWIFT) format --in-place --recursive Package.swift Sources Tests bench/Sources

clean:
	rm -rf .build

# Benchmarks (bench/run.sh): kiln beside Packer 1.6.6 on the same work, B1-B9 and the boot
# levers, ~30 min under TCG; results in bench/results/latest.md. Not part of make test.
BENCH_PACKAGES = packer jq python3

bench: deps
	$(call install-missing,$(BENCH_PACKAGES))
	bench/run.sh

# Warm snapshots (issue 28): B1 cold, B1-warm and B5 beside Packer's B1, and the save time;
# results in bench/results/warm-latest.md (~10 min under TCG).
bench-warm: deps
	$(call install-missing,$(BENCH_PACKAGES))
	bench/run.sh --warm

# B11: export of a 2 GiB image (time, peak memory, pushes to a loopback registry).
bench-export: deps
	$(call install-missing,jq curl docker-registry)
	bench/export.sh

# B13: a fresh runner pulls the examples/debian chain from a loopback registry, beside skopeo.
bench-remote: deps
	$(call install-missing,jq curl docker-registry skopeo)
	bench/remote.sh

# B14: kiln serve on a 100,000-image catalog under wrk.
bench-serve: deps
	$(call install-missing,jq curl wrk sqlite3)
	bench/serve.sh

# B4, B8 and B9 only, in under a minute once kiln is built (CI runs it after the tests).
bench-quick: deps
	$(call install-missing,jq)
	bench/run.sh --quick
