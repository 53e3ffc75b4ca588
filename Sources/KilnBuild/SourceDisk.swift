import Foundation
import KilnCore
import KilnModel
import KilnStore
import KilnTemplates

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The identity of a base's source: key inputs, and a line for people.
public struct SourceIdentity: Sendable, Equatable {
    public var fields: [String: String]
    public var summary: String

    public var key: String { KeyInputs(fields).key }
}

/// Makes the disk a base image starts from, without booting anything, and keeps it in the
/// store keyed by what made it, so the next build of the same source reuses it.
struct SourceDisk {
    let store: Store

    /// Bumped whenever the recipe below changes what a source disk contains.
    static let recipeVersion = "5"

    /// Packages every bootstrapped base needs to boot (kiln's direct kernel boot, and its own
    /// boot loaders under any firmware) and answer SSH.
    static let bootPackages =
        [
            "linux-image-cloud-amd64", "systemd-sysv", "udev", "openssh-server", "ifupdown", "isc-dhcp-client",
        ] + BootableDisk.packages

    /// What a debootstrap base installs: kiln's boot packages, cloud-init if asked for, the template's.
    static func packages(_ spec: Debootstrap) -> [String] {
        bootPackages + (spec.cloudInit ? BootableDisk.cloudInitPackages : []) + spec.include
    }

    /// - Returns: the digest of the stored source blob (`images/<digest>/`).
    func prepare(_ template: Template, identity: SourceIdentity, buildID: String, log: BuildLog) async throws -> String {
        let key = identity.key
        let summary = identity.summary
        if let digest = try store.catalog.sourceDigest(key: key) {
            // Leased first (gc and the cache prune leave it alone from here), then checked.
            try await store.withBlobLock { try store.lease([Store.blobResource(digest)], buildID: buildID) }
            // A cached disk is used only if its bytes still hash to its name.
            // Verified through the store: a child built later in this run does not hash it again.
            if (try? store.verifyBlob(digest)) != nil {
                try store.catalog.markSourceUsed(key: key)
                log.emit("kiln", "source disk up to date: \(summary) (\(digest.prefix(12)), digest verified)")
                return digest
            }
            log.emit("kiln", "cached source disk \(digest.prefix(12)) is missing or damaged; making it again")
            try store.catalog.forgetSource(key: key)
            if try !store.catalog.backingDigests().contains(digest) {
                try? FileManager.default.removeItem(atPath: store.blobDirectory(digest: digest))
            }
        }
        let staging = store.stagingDirectory(buildID: buildID + "-source")
        try? Store.removeTree(staging)
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        do {
            switch template.source {
            case .debootstrap(let spec):
                try await bootstrap(
                    spec, sources: try Self.aptSources(of: spec, at: template.sourceLocation), diskSize: template.qemu.diskSize,
                    into: staging, log: log)
            case .file(let path, let sha256):
                try await importDisk(path, sha256: sha256, into: staging, log: log)
            case .url(let url, let sha256):
                try await store.withBlobLock { try store.lease([Store.downloadResource(sha256)], buildID: buildID) }
                let path = try await download(url, sha256: sha256, log: log)
                try await importDisk(path, sha256: sha256, into: staging, log: log)
            case .image, .providerImage:
                throw KilnError(.internalError, "an image source has no source disk")
            }
            let (digest, size) = try store.seal(staging: staging) { digest in
                try digest.write(
                    toFile: store.scratchDirectory(buildID: buildID) + "/" + Recovery.sealedSourceMarker, atomically: true, encoding: .utf8)
                // Before the catalog lists it as a cache entry, which a prune could remove.
                try store.lease([Store.blobResource(digest)], buildID: buildID)
            }
            try store.catalog.recordSource(key: key, digest: digest, description: summary)
            log.emit("kiln", "source disk ready: \(summary), \(size >> 20) MiB (\(digest.prefix(12)))")
            return digest
        } catch {
            try? Store.removeTree(staging)
            throw error
        }
    }

    /// What determines the source disk's content: these fields are part of the build key of
    /// every image built on it, and their hash names the cached source disk.
    ///
    /// A debootstrap base's identity includes the state of its
    /// repositories (the hashes of their Release files), except when `previous` (the key inputs
    /// of the family's newest image) was made from the same recipe and its source disk is still
    /// cached: then the image stays pinned to the state it was made from, so a mirror that
    /// publishes does not rebuild every image on the next `kiln build`. Moving a base to newer
    /// packages is `kiln refresh`'s work, which passes no `previous`.
    static func identity(
        of template: Template, pinnedTo previous: KeyInputs? = nil, isCached: (String) throws -> Bool = { _ in false }
    ) async throws -> SourceIdentity {
        switch template.source {
        case .debootstrap(let spec):
            let sources = try aptSources(of: spec, at: template.sourceLocation)
            let packages = Self.packages(spec).sorted()
            var fields = [
                "source.kind": "debootstrap", "source.recipe": Self.recipeVersion, "source.suite": spec.suite,
                "source.variant": spec.variant, "source.include": packages.joined(separator: ","),
                "source.mirror": sources[0].mirror, "source.disk_size": String(template.qemu.diskSize),
            ]
            // Entries only where a template uses them: earlier images' keys stay valid.
            if spec.components != ["main"] { fields["source.components"] = spec.components.joined(separator: ",") }
            if spec.trusted { fields["source.trusted"] = "yes" }
            if spec.cloudInit { fields["source.cloud_init"] = "yes" }
            if sources.count > 1 { fields["source.updates"] = sources.dropFirst().map(Self.sourcesLine).joined(separator: "; ") }
            let summary = "debootstrap \(spec.suite)/\(spec.variant)"
            if let previous, let release = previous.entries["source.release"],
                previous.entries.filter({ $0.key.hasPrefix("source.") && $0.key != "source.release" }) == fields
            {
                var pinned = fields
                pinned["source.release"] = release
                let identity = SourceIdentity(fields: pinned, summary: summary)
                if try isCached(identity.key) { return identity }
            }
            fields["source.release"] = try await releaseState(sources)
            return SourceIdentity(fields: fields, summary: summary)
        case .file(let path, let sha256):
            return SourceIdentity(
                fields: ["source.kind": "disk", "source.recipe": Self.recipeVersion, "source.sha256": sha256],
                summary: "file \(path)")
        case .url(let url, let sha256):
            return SourceIdentity(
                fields: ["source.kind": "disk", "source.recipe": Self.recipeVersion, "source.sha256": sha256],
                summary: "url \(url)")
        case .providerImage(let id):
            // The provider's image is taken as it is: its id names its bytes (AMIs are immutable).
            return SourceIdentity(fields: ["source.kind": "provider_image", "source.id": id], summary: "provider image \(id)")
        case .image(let family):
            throw KilnError(.internalError, "image \(family) is a parent, not a source")
        }
    }

    /// The repositories a debootstrap base installs from, its main suite first.
    static func aptSources(of spec: Debootstrap, at location: SourceLocation) throws -> [AptSource] {
        guard let mirror = spec.mirror ?? DebianMirror.host() else {
            throw KilnError(
                .invalidInput, "no Debian mirror: set from.debootstrap.mirror or KILN_MIRROR (the host's apt configuration names none)",
                at: location)
        }
        let main = AptSource(
            mirror: mirror, suite: spec.suite, components: spec.components, signedBy: spec.signedBy, trusted: spec.trusted)
        return [main]
            + spec.updates.map { update in
                AptSource(
                    mirror: update.mirror ?? DebianMirror.host(forSuite: update.suite) ?? mirror, suite: update.suite,
                    components: update.components ?? spec.components, signedBy: update.signedBy ?? spec.signedBy,
                    trusted: update.trusted ?? spec.trusted)
            }
    }

    /// The line mmdebstrap writes into the image's sources.list. Without `signed-by`: the
    /// bootstrap trusts what the host's apt trusts, and a host path would mean nothing in the guest.
    static func sourcesLine(_ source: AptSource) -> String {
        "deb" + (source.trusted ? " [trusted=yes]" : "") + " \(source.mirror) \(source.suite) "
            + source.components.joined(separator: " ")
    }

    private static let releaseHashes = Locked<[AptSource: String]>([:])

    /// The repositories' state: the SHA-256 of the main suite's Release file (the form keys had
    /// before `updates:` existed), or of every suite's, one line each.
    static func releaseState(_ sources: [AptSource]) async throws -> String {
        var hashes: [String] = []
        for source in sources {
            if let known = releaseHashes.value[source] {
                hashes.append(known)
                continue
            }
            let hash = try await AptIndexFetcher(cacheDirectory: nil).releaseHash(source)
            releaseHashes.withLock { $0[source] = hash }
            hashes.append(hash)
        }
        guard hashes.count > 1 else { return hashes[0] }
        return Hashing.sha256Hex(zip(sources, hashes).map { "\($0.suite) \($1)\n" }.joined())
    }

    /// The stages mmdebstrap announces, in order (its `I:` lines).
    static let mmdebstrapStages = [
        "running apt-get update", "downloading packages", "extracting archives", "installing essential packages",
        "installing remaining packages", "running --customize-hook", "cleaning package lists",
    ]

    /// mmdebstrap builds the tree; its customize hook makes the guest bootable and writes the
    /// ext4 disk from the tree with `mkfs.ext4 -d`: no VM, no mount, no loop device.
    private func bootstrap(_ spec: Debootstrap, sources: [AptSource], diskSize: UInt64, into staging: String, log: BuildLog) async throws {
        try BootableDisk.checkHostTools()
        let hook = staging + "/customize.sh"
        let installer = staging + "/install-boot-loaders"
        try Self.customizeHook.write(toFile: hook, atomically: true, encoding: .utf8)
        try BootableDisk.installer.write(toFile: installer, atomically: true, encoding: .utf8)
        defer { for file in [hook, installer] { try? FileManager.default.removeItem(atPath: file) } }
        let packages = Self.packages(spec).joined(separator: ",")
        // mmdebstrap's working tree goes into the build's staging directory, inside the store:
        // if kiln is killed, the next kiln finds and removes it (unmounting what it mounted).
        let environment = [
            "KILN_HOOK": hook, "KILN_INSTALLER": installer, "KILN_CLOUD_INIT": spec.cloudInit ? "yes" : "no", "KILN_OUT": staging,
            "KILN_DISK_SIZE": String(diskSize), "TMPDIR": staging,
        ]
        let started = ContinuousClock.now
        let meter = ProgressMeter("bootstrap \(spec.suite)", total: Int64(Self.mmdebstrapStages.count), unit: .stages)
        defer { meter.finish() }
        let onLine: @Sendable (ProcessOutputLine) -> Void = { line in
            log.emit("debootstrap", line.text)
            // mmdebstrap names each stage as it enters it: the meter counts them (no byte counts
            // come out of it).
            if let index = Self.mmdebstrapStages.firstIndex(where: { line.text.hasPrefix("I: " + $0) }) {
                meter.set(done: Int64(index + 1), stage: Self.mmdebstrapStages[index])
            }
        }
        if ProcessRunner.find("mmdebstrap") != nil {
            let mode = getuid() == 0 ? "root" : "unshare"
            log.emit("kiln", "bootstrapping Debian \(spec.suite) (\(spec.variant), mmdebstrap --mode=\(mode))")
            let result = try await ProcessRunner.run(
                "mmdebstrap",
                [
                    "--mode=\(mode)", "--variant=\(spec.variant)", "--include=\(packages)",
                    "--customize-hook=sh \"$KILN_HOOK\" \"$1\"",
                    spec.suite, "/dev/null",
                ] + sources.map(Self.sourcesLine),
                environment: environment, timeout: .seconds(1800), onLine: onLine)
            guard result.succeeded else {
                throw KilnError(.buildFailed, "mmdebstrap failed with exit status \(result.status) (see the debootstrap lines in the log)")
            }
        } else {
            // Without mmdebstrap, debootstrap needs root; the same hook then runs on its tree.
            guard sources.count == 1, spec.components == ["main"], !spec.trusted else {
                throw KilnError(.buildFailed, "from.debootstrap's updates, components and trusted need mmdebstrap; install mmdebstrap")
            }
            let mirror = sources[0].mirror
            guard getuid() == 0 else {
                throw KilnError(.buildFailed, "a debootstrap source needs mmdebstrap (or debootstrap run as root); install mmdebstrap")
            }
            let tree = staging + "/rootfs"
            defer { try? FileManager.default.removeItem(atPath: tree) }
            log.emit("kiln", "bootstrapping Debian \(spec.suite) (\(spec.variant), debootstrap; mmdebstrap is not installed)")
            let result = try await ProcessRunner.run(
                "debootstrap", ["--variant=\(spec.variant)", "--include=\(packages)", spec.suite, tree, mirror],
                timeout: .seconds(1800), onLine: onLine)
            guard result.succeeded else {
                throw KilnError(.buildFailed, "debootstrap failed with exit status \(result.status) (see the debootstrap lines in the log)")
            }
            try await ProcessRunner.check("sh", [hook, tree], environment: environment, onLine: onLine)
        }
        log.emit("kiln", "bootstrapped in \((ContinuousClock.now - started).kilnDescription)")
        try await BootableDisk.installBootLoaders(
            disk: staging + "/disk.raw", kernel: staging + "/" + Store.kernelName, initrd: staging + "/" + Store.initrdName, log: log)
        try await DiskImage.convert(staging + "/disk.raw", format: "raw", to: staging + "/" + Store.diskName, outputFormat: "qcow2")
        try FileManager.default.removeItem(atPath: staging + "/disk.raw")
    }

    /// Runs inside mmdebstrap's namespace with the tree as $1. Kiln's own text: no template
    /// value is pasted into it (they arrive as mmdebstrap's arguments and the environment).
    static let customizeHook = #"""
        set -eu
        root="$1"
        export PATH="$PATH:/usr/sbin:/sbin"
        \#(BootableDisk.configureTree)
        echo kiln > "$root/etc/hostname"
        printf '127.0.0.1\tlocalhost\n127.0.1.1\tkiln\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
        # No image ships host keys: each instance makes its own ed25519 key on its first boot,
        # synced at once (an instance stopped hard right after would otherwise keep an empty key
        # file, and sshd would never start again), and made again if one of the pair is empty.
        rm -f "$root"/etc/ssh/ssh_host_*
        mkdir -p "$root/etc/ssh/sshd_config.d" "$root/etc/systemd/system/ssh.service.d"
        cat > "$root/etc/ssh/sshd_config.d/10-kiln.conf" <<'EOF'
        HostKey /etc/ssh/ssh_host_ed25519_key
        PermitRootLogin prohibit-password
        PasswordAuthentication no
        UseDNS no
        EOF
        cat > "$root/etc/systemd/system/ssh.service.d/kiln-host-key.conf" <<'EOF'
        [Service]
        ExecStartPre=
        ExecStartPre=/bin/sh -c 'k=/etc/ssh/ssh_host_ed25519_key; test -s $$k && test -s $$k.pub && exit 0; rm -f $$k $$k.pub; ssh-keygen -q -t ed25519 -N "" -f $$k && sync $$k $$k.pub'
        ExecStartPre=/usr/sbin/sshd -t
        EOF
        : > "$root/etc/machine-id"
        rm -f "$root/var/lib/dbus/machine-id"
        cp "$root"/boot/vmlinuz-* "$KILN_OUT/vmlinuz"
        cp "$root"/boot/initrd.img-* "$KILN_OUT/initrd.img"
        # /proc, /sys and /dev are still mounted in the tree here: a hard-linked copy that stays
        # on the tree's own filesystem leaves them out (their mount points stay, empty) for free.
        tree="$root.kiln-tree"
        rm -rf "$tree"
        cp -al --one-file-system "$root" "$tree"
        # mmdebstrap undoes these in its cleanup, which runs after this hook: undo them in the
        # copy so the image has working service control and no bootstrap leftovers.
        rm -f "$tree/usr/sbin/policy-rc.d" "$tree/etc/apt/apt.conf.d/00mmdebstrap"
        if [ -e "$tree/usr/sbin/start-stop-daemon.REAL" ]; then
          mv -f "$tree/usr/sbin/start-stop-daemon.REAL" "$tree/usr/sbin/start-stop-daemon"
        elif [ -e "$tree/sbin/start-stop-daemon.REAL" ]; then
          mv -f "$tree/sbin/start-stop-daemon.REAL" "$tree/sbin/start-stop-daemon"
        fi
        rm -rf "$tree"/var/lib/apt/lists/* "$tree"/var/cache/apt/*.bin "$tree"/var/cache/apt/archives/*.deb
        mkdir -p "$tree/var/lib/apt/lists/partial"
        # The host's resolver configuration and the bootstrap's own logs are not the image's.
        rm -f "$tree/etc/resolv.conf" "$tree/var/log/dpkg.log" "$tree/var/log/alternatives.log" \
          "$tree"/var/log/apt/*.log "$tree"/var/log/apt/eipp.log.xz "$tree/var/cache/ldconfig/aux-cache"
        find "$tree/tmp" -mindepth 1 -delete
        \#(BootableDisk.writeDisk)
        rm -rf "$tree"
        """#

    private func importDisk(_ path: String, sha256: String, into staging: String, log: BuildLog) async throws {
        log.emit("kiln", "verifying \(path)")
        let actual = try Hashing.sha256Hex(fileAt: path)
        guard actual == sha256 else {
            throw KilnError(.buildFailed, "\(path): sha256 is \(actual), the template expects \(sha256)")
        }
        // The sha256 covers the file, not what its header names: a qcow2 pointing at a host file
        // as its backing file would pull that file into the image. DiskImage refuses it.
        let info = try await DiskImage.checkForeign(path)
        log.emit("kiln", "importing \(path) (\(info.format), \(info.virtualSize >> 20) MiB)")
        try await DiskImage.convert(path, format: info.format, to: staging + "/" + Store.diskName, outputFormat: "qcow2")
    }

    /// Downloads into the cache by checksum; a verified file is never fetched again.
    private func download(_ url: String, sha256: String, log: BuildLog) async throws -> String {
        let directory = store.cacheDirectory + "/downloads"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let cached = directory + "/" + sha256
        if FileManager.default.fileExists(atPath: cached) { return cached }
        guard let remote = URL(string: url) else { throw KilnError(.invalidInput, "invalid URL \(url)") }
        log.emit("kiln", "downloading \(url)")
        let fetched = directory + "/" + sha256 + ".download"
        let resumed = try await Download.fetch(remote, to: fetched)
        if resumed > 0 { log.emit("kiln", "resumed the download at byte \(resumed)") }
        let actual = try Hashing.sha256Hex(fileAt: fetched)
        guard actual == sha256 else {
            try? FileManager.default.removeItem(atPath: fetched)
            throw KilnError(.buildFailed, "\(url): sha256 is \(actual), the template expects \(sha256)")
        }
        try FileManager.default.moveItem(atPath: fetched, toPath: cached)
        return cached
    }
}
