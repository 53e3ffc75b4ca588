import Crypto
import Foundation
import KilnCore
import KilnDisk
import KilnModel
import KilnRegistry
import KilnStore

#if canImport(Glibc)
    import Glibc
#endif

public enum ExportFormat: String, CaseIterable, Sendable, Codable {
    case qcow2, raw, vmdk
    /// A fixed VHD of a whole number of MiB, as Azure imports it.
    case vhd
    /// `disk.raw`, a whole number of GiB, alone in a gzip-compressed tar, as GCE imports it.
    case gce
    case tarZst = "tar.zst"
    case oci

    /// A whole bootable disk (not a tree of files): what a hypervisor or a cloud starts.
    public var isDisk: Bool { ![.tarZst, .oci].contains(self) }

    /// What `--output` defaults to, after the image's name.
    public var suffix: String {
        switch self {
        case .oci: ".oci"
        case .gce: ".tar.gz"
        default: "." + rawValue
        }
    }
}

/// One file an export wrote, as the manifest beside it lists it.
public struct ExportedFile: Codable, Sendable, Equatable {
    public var name: String
    public var size: Int64
    public var sha256: String
}

/// One OCI layer: the kiln image whose change it holds, its blob and its uncompressed digest.
public struct ExportedLayer: Codable, Sendable, Equatable {
    public var image: String
    public var digest: String
    public var diffID: String
    public var size: Int64
    public var entries: Int
    /// Not made again: a push found it in the registry (``LayerCache``).
    public var reused: Bool?

    enum CodingKeys: String, CodingKey {
        case image, digest
        case diffID = "diff_id"
        case size, entries, reused
    }
}

/// The layers exports made, by the disks they came from: a layer's bytes depend only on its
/// image's disk and its parent's (and on how kiln writes them, hence the version in the key),
/// so a push can ask the registry for a layer before spending minutes making it again.
///
/// A JSON file under the store (`oci/layers.json`). Two exports writing it at once may lose an
/// entry; that costs one layer made again, never a wrong one, because the registry is asked
/// for the digest itself.
struct LayerCache {
    let path: String

    init(store: Store) { path = store.root + "/oci/layers.json" }

    static func key(_ image: ImageRecord, _ parent: ImageRecord?) -> String {
        "v1:" + image.digest + ":" + (parent?.digest ?? "-")
    }

    private func load() -> [String: ExportedLayer] {
        guard let data = FileManager.default.contents(atPath: path) else { return [:] }
        return (try? JSONDecoder().decode([String: ExportedLayer].self, from: data)) ?? [:]
    }

    func layer(of image: ImageRecord, on parent: ImageRecord?) -> ExportedLayer? { load()[Self.key(image, parent)] }

    func record(_ layer: ExportedLayer, of image: ImageRecord, on parent: ImageRecord?) {
        var all = load()
        all[Self.key(image, parent)] = layer
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try? encoder.encode(all).write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}

public struct ExportResult: Codable, Sendable {
    public var image: String
    public var format: ExportFormat
    public var path: String
    /// A disk or tar file's `sha256:`; an OCI layout's manifest digest.
    public var digest: String
    public var files: [ExportedFile]
    public var layers: [ExportedLayer]?
    /// The OCI layout's tag for the manifest.
    public var tag: String?
}

/// Writes an image out of the store in a form that runs elsewhere: a flattened disk, a tar of
/// its root filesystem, or an OCI image. Every form is written beside its final path and
/// renamed into place, so an interrupted export leaves no half artifact under the final name.
public struct Exporter: Sendable {
    public let store: Store
    public let log: @Sendable (String) -> Void

    public init(store: Store, log: @escaping @Sendable (String) -> Void) {
        self.store = store
        self.log = log
    }

    /// - Parameter remoteHas: for a layout that is only pushed: whether the registry has a blob.
    ///   A layer made before (``LayerCache``) that the registry has is then not made again, and
    ///   the layout lacks its blob.
    public func export(
        _ image: ImageRecord, format: ExportFormat, to output: String, tag: String? = nil,
        remoteHas: (@Sendable (String) async throws -> Bool)? = nil
    ) async throws -> ExportResult {
        guard !image.purged else { throw KilnError(.notFound, "\(image.name) was deleted and its disk removed (kiln gc)") }
        if let artifact = try store.artifact(of: image) {
            throw KilnError(
                .invalidInput,
                "\(image.name) is a \(artifact.provider) image (\(artifact.summary)), not a disk in the store: kiln export works on qemu images"
            )
        }
        let disk = store.diskPath(of: image)
        guard FileManager.default.fileExists(atPath: disk) else {
            throw KilnError(.storeInconsistent, "\(image.name)'s disk \(disk) is missing (kiln verify \(image.name))")
        }
        // What is exported is signed beside it: it must be the bytes that were sealed.
        try await Verifier.trust(store, image)
        if format.isDisk, try store.catalog.standsOnBareFilesystem(image) {
            log("warning: " + Catalog.bareFilesystemNotice(image))
        }
        // A name of kiln's own beside the output: whatever else lies there is never touched.
        let partial = output + ".kiln-partial-\(getpid())-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: partial) }
        var layers: [ExportedLayer]?
        let digest: String
        let tag = format == .oci ? tag ?? image.version : nil
        switch format {
        case .qcow2, .raw, .vmdk:
            try await convert(disk, format: format, to: partial)
            digest = "sha256:" + (try Hashing.sha256Hex(fileAt: partial))
        case .vhd, .gce:
            try await withScratch { scratch in
                try await writeCloudDisk(image, format: format, to: partial, scratch: scratch)
            }
            digest = "sha256:" + (try Hashing.sha256Hex(fileAt: partial))
        case .tarZst:
            try await withScratch { scratch in
                let raw = try await flatten(image, into: scratch)
                let archive = try TreeArchive.zstdFile(partial)
                try archive.addTree(try Ext4Volume(path: raw))
                try archive.finish()
                log("wrote \(archive.entries) entries")
            }
            digest = "sha256:" + (try Hashing.sha256Hex(fileAt: partial))
        case .oci:
            let written = try await withScratch { scratch in
                try await writeLayout(image, at: partial, tag: tag!, scratch: scratch, remoteHas: remoteHas)
            }
            layers = written.layers
            digest = written.manifest
        }
        try FileManager.default.moveItem(atPath: partial, toPath: output)
        let files =
            try format == .oci ? [] : [ExportedFile(name: (output as NSString).lastPathComponent, size: Self.size(output), sha256: digest)]
        return ExportResult(image: image.name, format: format, path: output, digest: digest, files: files, layers: layers, tag: tag)
    }

    /// What `--force` may replace: a previous kiln export of the same kind, and nothing else.
    /// It has kiln's provenance record beside it (`PATH.provenance.json`); a file format is a
    /// regular file, an OCI layout a directory with `oci-layout` and no mount point inside.
    /// Symbolic links are refused, not followed. Anything else is the user's: an error says so.
    public static func removePreviousExport(at path: String, format: ExportFormat) throws {
        let fm = FileManager.default
        let refuse = { (why: String) in
            KilnError(.invalidInput, "\(path) exists and \(why): --force replaces only an earlier kiln export of the same format")
        }
        let attributes = try fm.attributesOfItem(atPath: path)
        let type = attributes[.type] as? FileAttributeType
        guard type != .typeSymbolicLink else { throw refuse("is a symbolic link") }
        guard fm.fileExists(atPath: ExportSidecars.provenancePath(path)) else {
            throw refuse("has no kiln provenance record beside it (\((ExportSidecars.provenancePath(path) as NSString).lastPathComponent))")
        }
        if format == .oci {
            guard type == .typeDirectory, fm.fileExists(atPath: path + "/oci-layout") else { throw refuse("is not an OCI layout") }
            guard Store.mountPoints(under: URL(fileURLWithPath: path).standardizedFileURL.path).isEmpty else {
                throw refuse("has a filesystem mounted inside")
            }
        } else {
            guard type == .typeRegular else { throw refuse("is not a regular file") }
        }
        try fm.removeItem(atPath: path)
    }

    static func size(_ path: String) throws -> Int64 {
        (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.int64Value ?? 0
    }

    // MARK: - Disks

    /// `qemu-img convert` reads the whole backing chain and writes one standalone disk; the
    /// clusters no layer wrote are left out, which is what compacts it.
    private func convert(_ disk: String, format: ExportFormat, to path: String) async throws {
        let options = format == .vmdk ? "subformat=streamOptimized" : nil
        log("qemu-img convert -f qcow2 -O \(format.rawValue)" + (options.map { " -o " + $0 } ?? "") + " \(disk) \(path)")
        try await DiskImage.convert(
            disk, format: "qcow2", to: path, outputFormat: format.rawValue, options: options, progress: "export \(format.rawValue)")
    }

    /// What Azure and GCE import. Both want the disk's size rounded: Azure a fixed VHD of whole
    /// MiB, GCE a raw disk of whole GiB (the image's root grows to whatever disk it is given).
    /// GCE's archive is the one its import documents: `disk.raw` alone, GNU tar's oldgnu format
    /// with sparse files, gzip; made by GNU tar, which writes exactly that form.
    private func writeCloudDisk(_ image: ImageRecord, format: ExportFormat, to path: String, scratch: String) async throws {
        let raw = scratch + "/disk.raw"
        try FileManager.default.moveItem(atPath: try await flatten(image, into: scratch), toPath: raw)
        let unit: Int64 = format == .vhd ? 1 << 20 : 1 << 30
        let size = try Self.size(raw)
        let rounded = (size + unit - 1) / unit * unit
        if rounded != size {
            log("growing the disk from \(size) to \(rounded) bytes (a whole number of \(format == .vhd ? "MiB" : "GiB"))")
            guard truncate(raw, off_t(rounded)) == 0 else {
                throw KilnError(.io, "cannot grow \(raw): \(String(cString: strerror(errno)))")
            }
        }
        if format == .vhd {
            log("qemu-img convert -f raw -O vpc -o subformat=fixed,force_size=on \(raw) \(path)")
            try await DiskImage.convert(
                raw, format: "raw", to: path, outputFormat: "vpc", options: "subformat=fixed,force_size=on", progress: "export vhd")
        } else {
            log("tar --format=oldgnu -Sczf \(path) disk.raw")
            try await ProcessRunner.check("tar", ["--format=oldgnu", "-Sczf", path, "-C", scratch, "disk.raw"])
        }
    }

    /// A sparse raw copy of the image's whole chain, for the ext4 reader.
    private func flatten(_ image: ImageRecord, into scratch: String) async throws -> String {
        let raw = scratch + "/" + image.digest + ".raw"
        if !FileManager.default.fileExists(atPath: raw) { try await convert(store.diskPath(of: image), format: .raw, to: raw) }
        return raw
    }

    /// A scratch directory in the store (the disks are large; /tmp may be memory), removed
    /// afterwards, and removed by the next export if this process dies first.
    private func withScratch<T>(_ body: (String) async throws -> T) async throws -> T {
        let parent = store.root + "/builds"
        let fm = FileManager.default
        for name in (try? fm.contentsOfDirectory(atPath: parent)) ?? [] where name.hasPrefix("export-") {
            if !Store.isLiveExportScratch(name) { try? Store.removeTree(parent + "/" + name) }
        }
        let scratch = parent + "/export-\(getpid())-\(UUID().uuidString.prefix(8).lowercased())"
        try fm.createDirectory(atPath: scratch, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? Store.removeTree(scratch) }
        return try await body(scratch)
    }

    // MARK: - OCI

    /// An OCI image layout: one gzipped tar layer per kiln layer (the base's whole tree, then
    /// each child's difference from its parent, with whiteouts for what it removed) and a
    /// config carrying the image's labels.
    private func writeLayout(
        _ image: ImageRecord, at path: String, tag: String, scratch: String, remoteHas: (@Sendable (String) async throws -> Bool)?
    ) async throws -> (
        manifest: String, layers: [ExportedLayer]
    ) {
        var chain = [image]
        while let name = chain.last?.parent {
            guard let parent = try store.catalog.image(named: name) else {
                throw KilnError(.storeInconsistent, "\(chain.last!.name)'s parent \(name) is not in the catalog")
            }
            guard !parent.purged else { throw KilnError(.notFound, "\(image.name)'s parent \(name) was deleted and its disk removed") }
            chain.append(parent)
        }
        chain.reverse()
        let layout = OCILayout(path: path)
        let blobs = path + "/blobs/sha256"
        try FileManager.default.createDirectory(atPath: blobs, withIntermediateDirectories: true)
        var layers: [ExportedLayer] = []
        let cache = LayerCache(store: store)
        for (position, member) in chain.enumerated() {
            let parent = position > 0 ? chain[position - 1] : nil
            if let remoteHas, var known = cache.layer(of: member, on: parent), try await remoteHas(known.digest) {
                known.image = member.name
                known.reused = true
                layers.append(known)
                log("layer \(member.name): \(known.digest.prefix(19))… is in the registry already; not made again")
                continue
            }
            let volume = try Ext4Volume(path: try await flatten(member, into: scratch))
            let temporary = blobs + "/.layer-\(layers.count)"
            let writer = try GzipBlobWriter(path: temporary)
            let archive = try TreeArchive.stream(to: writer)
            if let parent {
                let parentRaw = try await flatten(parent, into: scratch)
                try archive.addDifference(volume, parent: try Ext4Volume(path: parentRaw))
                // Nothing after this layer needs the parent's copy.
                try? FileManager.default.removeItem(atPath: parentRaw)
            } else {
                try archive.addTree(volume)
            }
            try archive.finish()
            let (diffID, digest, size) = try writer.finish()
            try? FileManager.default.removeItem(atPath: layout.blobPath(digest))
            try FileManager.default.moveItem(atPath: temporary, toPath: layout.blobPath(digest))
            let layer = ExportedLayer(image: member.name, digest: digest, diffID: diffID, size: size, entries: archive.entries)
            layers.append(layer)
            cache.record(layer, of: member, on: parent)
            log("layer \(member.name): \(archive.entries) entries, \(digest.prefix(19))… (\(size >> 10) KiB)")
        }
        let labels = Self.labels(of: image)
        let created = ISO8601DateFormatter().string(from: image.created)
        let config: [String: Any] = [
            "created": created, "architecture": "amd64", "os": "linux",
            "config": ["Labels": labels],
            "rootfs": ["type": "layers", "diff_ids": layers.map(\.diffID)],
            "history": chain.map { member in
                ["created": ISO8601DateFormatter().string(from: member.created), "created_by": "kiln build \(member.name)"]
            },
        ]
        let configDescriptor = try writeBlob(
            JSONSerialization.data(withJSONObject: config, options: [.sortedKeys]), mediaType: OCIMediaType.config, in: layout)
        let manifest = OCIManifest(
            config: configDescriptor,
            layers: layers.map { OCIDescriptor(mediaType: OCIMediaType.layerGzip, digest: $0.digest, size: $0.size) },
            annotations: ["org.opencontainers.image.created": created, "org.opencontainers.image.version": image.version])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var manifestDescriptor = try writeBlob(encoder.encode(manifest), mediaType: OCIMediaType.manifest, in: layout)
        manifestDescriptor.annotations = [OCILayout.refName: tag]
        try encoder.encode(OCIIndex(manifests: [manifestDescriptor])).write(to: URL(fileURLWithPath: path + "/index.json"))
        try Data(#"{"imageLayoutVersion":"1.0.0"}"#.utf8).write(to: URL(fileURLWithPath: path + "/oci-layout"))
        return (manifestDescriptor.digest, layers)
    }

    /// The template's labels and kiln's own, which say which image the OCI image is.
    static func labels(of image: ImageRecord) -> [String: String] {
        var labels = image.labelDictionary
        labels["kiln.image"] = image.name
        labels["kiln.family"] = image.family
        labels["kiln.version"] = image.version
        labels["kiln.disk-digest"] = "sha256:" + image.digest
        if let key = image.buildKey { labels["kiln.build-key"] = "sha256:" + key }
        return labels
    }

    private func writeBlob(_ data: Data, mediaType: String, in layout: OCILayout) throws -> OCIDescriptor {
        let digest = "sha256:" + Hashing.sha256Hex(data)
        try data.write(to: URL(fileURLWithPath: layout.blobPath(digest)))
        return OCIDescriptor(mediaType: mediaType, digest: digest, size: Int64(data.count))
    }
}
