import Foundation
import KilnCore
import KilnModel
import KilnRegistry
import KilnStore

#if canImport(Glibc)
    import Glibc
#endif

/// The store's blobs in an OCI registry, with the local store as their cache (docs/remote.md).
/// A build pushes its sealed blob before the catalog names the image; a build on a parent, a
/// test run or `kiln pull` fetches the parent's chain of blobs by the digests the catalog
/// records, each checked before it is used.
public final class Remote: Sendable {
    public let location: RemoteLocation
    public let store: Store
    let client: RegistryClient
    /// Pulls under way in this process, by blob digest: two builds on one parent wait for one pull.
    private let pulling = Locked<[String: Task<Bool, any Error>]>([:])
    /// Blobs at most this many are fetched at once.
    static let parallelBlobs = 3

    public init(location: RemoteLocation, store: Store, client: RegistryClient? = nil) {
        self.location = location
        self.store = store
        self.client = client ?? location.client()
    }

    // MARK: Pushing

    /// What a push did.
    public struct PushReport: Sendable, Equatable, Codable {
        /// Blob digests whose files were uploaded.
        public var uploaded: [String] = []
        /// Blob digests the remote had already.
        public var present: [String] = []
        /// The image manifest's digest, when the image was tagged.
        public var manifest: String?
        /// Whether the build record (provenance, signature, log) went up.
        public var record = false
    }

    /// Puts each blob of `chain` the remote lacks there, under `kiln-blob-<digest>`.
    /// `annotations` says what to write on each blob's manifest.
    public func pushBlobs(_ chain: [String], annotations: (String) -> [String: String] = { _ in [:] }) async throws
        -> PushReport
    {
        var report = PushReport()
        for digest in chain {
            let tag = RemoteArtifact.blobTag(digest)
            if try await client.manifestExists(tag) {
                report.present.append(digest)
                continue
            }
            let layers = try RemoteArtifact.layers(of: digest, in: store)
            try await upload(layers)
            // Between the layers and the manifest that names them: where a kill-point test kills.
            try await testDelay("KILN_TEST_DELAY_PUSH_MS")
            var notes = annotations(digest)
            notes[RemoteArtifact.blobAnnotation] = digest
            let (_, data) = try RemoteArtifact.manifest(
                layers: layers.map(\.descriptor), type: RemoteArtifact.imageType, annotations: notes)
            try await client.putManifest(data: data, mediaType: OCIMediaType.manifest, reference: tag)
            report.uploaded.append(digest)
        }
        return report
    }

    /// Tags the image's blob with its name (a manifest annotated with its family and version),
    /// then pushes its build record as a referrer of that manifest.
    public func publish(_ image: ImageRecord) async throws -> PushReport {
        var report = PushReport()
        // The layers are there: this follows pushBlobs (a build's UploadPhase, or `push`), which
        // uploaded them or found the blob's manifest naming them.
        let layers = try RemoteArtifact.layers(of: image.digest, in: store)
        let (_, data) = try RemoteArtifact.manifest(
            layers: layers.map(\.descriptor), type: RemoteArtifact.imageType, annotations: RemoteArtifact.annotations(of: image))
        guard RegistryReference.isTag(image.name) else {
            throw KilnError(.invalidInput, "\(image.name) cannot be a tag in \(location)")
        }
        let digest = try await client.putManifest(data: data, mediaType: OCIMediaType.manifest, reference: image.name)
        report.manifest = digest
        let subject = OCIDescriptor(mediaType: OCIMediaType.manifest, digest: digest, size: Int64(data.count))
        var files: [(OCIDescriptor, String)] = []
        for file in RemoteArtifact.RecordFile.allCases {
            let path = file.path(in: store, for: image)
            guard let contents = FileManager.default.contents(atPath: path) else { continue }
            let descriptor = OCIDescriptor(
                mediaType: RemoteArtifact.mediaType(of: file.rawValue), digest: "sha256:" + Hashing.sha256Hex(contents),
                size: Int64(contents.count), annotations: [RemoteArtifact.title: file.rawValue])
            files.append((descriptor, path))
        }
        guard !files.isEmpty else { return report }
        try await upload(files)
        let (record, recordData) = try RemoteArtifact.manifest(
            layers: files.map(\.0), type: RemoteArtifact.recordType,
            annotations: [RemoteArtifact.imageAnnotation: image.name, RemoteArtifact.blobAnnotation: image.digest],
            subject: subject)
        _ = try await client.putReferrer(data: recordData, manifest: record)
        report.record = true
        return report
    }

    /// `kiln push NAME`: the image's chain, its name and its record.
    public func push(_ image: ImageRecord) async throws -> PushReport {
        let chain = try store.blobChain(from: image.digest)
        // The blob's manifest is not the name's: gc deletes the name's by digest, and the blob's
        // may outlive it (another image on the same bytes).
        var report = try await pushBlobs(chain) { digest in
            digest == image.digest
                ? [
                    RemoteArtifact.familyAnnotation: image.family, RemoteArtifact.buildKeyAnnotation: image.buildKey ?? "",
                    RemoteArtifact.parentDigestAnnotation: image.backingDigest ?? "",
                ].filter { !$0.value.isEmpty } : [:]
        }
        let published = try await publish(image)
        report.manifest = published.manifest
        report.record = published.record
        return report
    }

    private func upload(_ files: [(descriptor: OCIDescriptor, path: String)]) async throws {
        if try await !client.blobExists(OCIDescriptor.emptyConfig.digest) {
            _ = try await client.uploadSmallBlob(OCIDescriptor.emptyConfigBytes)
        }
        for (descriptor, path) in files where try await !client.blobExists(descriptor.digest) {
            try await client.uploadBlob(path: path, descriptor: descriptor)
        }
    }

    /// Whether the remote has the blob `digest` (its manifest and every layer it names).
    public func holds(_ digest: String) async throws -> Bool {
        guard let fetched = try await client.fetchManifest(RemoteArtifact.blobTag(digest)) else { return false }
        // The manifest must be this blob (as a pull checks it), not merely answer.
        guard let layers = try? await checkedLayers(try fetched.decode(), digest: digest) else { return false }
        for layer in layers where try await !client.blobExists(layer.digest) { return false }
        return true
    }

    // MARK: Pulling

    /// What a pull did.
    public struct PullReport: Sendable, Equatable, Codable {
        /// Blob digests fetched into the local store.
        public var pulled: [String] = []
        /// Blob digests the local store had.
        public var cached: [String] = []
        /// Images whose build record (provenance, signature) was fetched.
        public var records: [String] = []
    }

    /// Makes `image` usable here: every blob of its chain the local store lacks is fetched,
    /// and the provenance and signature of each image in the chain (a build checks them).
    /// - Parameter logs: also fetch the image's own build log (for `kiln pull`).
    @discardableResult
    public func pull(chainOf image: ImageRecord, logs: Bool = false) async throws -> PullReport {
        var report = PullReport()
        let chain = try store.blobChain(from: image.digest)
        let missing = chain.filter { !FileManager.default.fileExists(atPath: Store.primaryFile(in: store.blobDirectory(digest: $0))) }
        report.cached = chain.filter { !missing.contains($0) }
        let fetched = try await concurrentMap(missing, limit: Self.parallelBlobs) { try await self.pullBlob($0) }
        for (digest, wasFetched) in zip(missing, fetched) {
            if wasFetched { report.pulled.append(digest) } else { report.cached.append(digest) }
        }
        // Used now: the cache prunes least recently used blobs first (SourceCache).
        for digest in chain { utimes(store.blobDirectory(digest: digest), nil) }
        // The records of the images on the chain that this store lacks.
        for digest in chain {
            guard let record = digest == image.digest ? image : try store.catalog.image(digest: digest) else { continue }
            let wanted = RemoteArtifact.RecordFile.allCases.filter { file in
                (file != .log || (logs && record.name == image.name))
                    && !FileManager.default.fileExists(atPath: file.path(in: store, for: record))
            }
            // Asked for when something a check needs is missing: the provenance, the log asked
            // for, or the signature of an image the catalog says was signed (an unsigned image's
            // absent signature sends no request each build).
            let signed = try store.catalog.signer(of: record.name) != nil
            guard wanted.contains(where: { $0 == .provenance || $0 == .log || ($0 == .signature && signed) }) else { continue }
            if try await pullRecordOnce(record, files: wanted) { report.records.append(record.name) }
        }
        return report
    }

    /// One blob, once per process however many builds ask: false when it was there already.
    func pullBlob(_ digest: String) async throws -> Bool {
        try await once(digest) { try await self.fetchBlob(digest) }
    }

    /// Runs `body` for `key` once at a time in this process: a second caller waits for the first's result.
    private func once(_ key: String, _ body: @escaping @Sendable () async throws -> Bool) async throws -> Bool {
        let task = pulling.withLock { running -> Task<Bool, any Error> in
            if let task = running[key] { return task }
            let task = Task { try await body() }
            running[key] = task
            return task
        }
        defer { _ = pulling.withLock { $0.removeValue(forKey: key) } }
        return try await withTaskCancellationHandler {
            try await task.value
        } onCancel: {
            task.cancel()
        }
    }

    /// Downloads the blob's layers into `images/.pull-<digest>/` (kept when interrupted: the
    /// next pull resumes them), checks that they are the blob the catalog names, makes them
    /// read-only and renames the directory to `images/<digest>/`.
    private func fetchBlob(_ digest: String) async throws -> Bool {
        let final = store.blobDirectory(digest: digest)
        let staging = store.imagesDirectory + "/.pull-" + digest
        // Another kiln process on this store may be pulling the same blob.
        let lock = try await FileLock.acquire(staging + ".lock")
        defer { withExtendedLifetime(lock) {} }
        if FileManager.default.fileExists(atPath: Store.primaryFile(in: final)) { return false }
        guard let fetched = try await client.fetchManifest(RemoteArtifact.blobTag(digest)) else {
            throw KilnError(
                .notFound,
                "\(location) has no blob \(digest.prefix(12)) (tag \(RemoteArtifact.blobTag(digest))): was it built without this remote? (kiln push NAME from the store that has it)"
            )
        }
        let manifest = try fetched.decode()
        let layers = try await checkedLayers(manifest, digest: digest)
        let fm = FileManager.default
        // A directory of ours, not whatever else might sit under the name.
        var info = stat()
        if lstat(staging, &info) == 0, info.st_mode & S_IFMT != S_IFDIR { try fm.removeItem(atPath: staging) }
        try fm.createDirectory(atPath: staging, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try Self.checkSpace(for: layers, at: staging, location: location)
        for layer in layers {
            let name = layer.annotations?[RemoteArtifact.title] ?? ""
            let path = staging + "/" + name
            // A file a killed pull finished is checked again, not trusted by its name.
            // Only a regular file is read (a link could name a FIFO and hang the pull).
            var info = stat()
            let regular = lstat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFREG
            if regular, (try? Hashing.sha256Hex(fileAt: path)).map({ "sha256:" + $0 }) == layer.digest {
                continue
            }
            try? fm.removeItem(atPath: path)
            do { try await client.downloadBlob(layer, to: path) } catch let error as KilnError where error.message.contains("refused") {
                throw KilnError(.io, "\(location): blob \(digest.prefix(12)), \(name): \(error.message)")
            }
        }
        // Exactly the layers go into the blob: nothing else an earlier attempt (or anyone) left.
        let names = Set(layers.compactMap { $0.annotations?[RemoteArtifact.title] })
        for name in try fm.contentsOfDirectory(atPath: staging) where !names.contains(name) {
            try fm.removeItem(atPath: staging + "/" + name)
        }
        for name in try fm.contentsOfDirectory(atPath: staging) {
            let path = staging + "/" + name
            let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { throw KilnError(.io, "cannot open \(path): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            guard fsync(fd) == 0, fchmod(fd, 0o444) == 0 else {
                throw KilnError(.io, "cannot seal \(path): \(String(cString: strerror(errno)))")
            }
        }
        guard chmod(staging, 0o755) == 0 else {
            throw KilnError(.io, "cannot seal \(staging): \(String(cString: strerror(errno)))")
        }
        // Its entries reach the disk before the name does: a blob is never present without its files.
        try Store.fsync(path: staging)
        if fm.fileExists(atPath: final) { try Store.removeTree(final) }
        guard rename(staging, final) == 0 else {
            throw KilnError(.io, "cannot move \(staging) to \(final): \(String(cString: strerror(errno)))")
        }
        try Store.fsync(path: store.imagesDirectory)
        // Every file was hashed as it arrived, against the digests the catalog's digest covers.
        store.noteVerified(digest)
        return true
    }

    /// The layers of a blob manifest, if they can be the blob `digest`: safe, distinct file
    /// names; the primary file (`blob.json`, `artifact.json` or the disk) carrying the digest
    /// the catalog records; and exactly the files it lists, with the digests it lists. Each
    /// layer's bytes are then checked against its digest as it arrives, so what is installed is
    /// what was sealed, whatever the registry says.
    func checkedLayers(_ manifest: OCIManifest, digest: String) async throws -> [OCIDescriptor] {
        let refuse = { (why: String) in
            KilnError(.io, "\(self.location): the manifest of blob \(digest.prefix(12)) is refused: \(why)")
        }
        guard manifest.artifactType == RemoteArtifact.imageType else {
            throw refuse("its artifactType is \(manifest.artifactType ?? "missing"), not \(RemoteArtifact.imageType)")
        }
        guard (1...16).contains(manifest.layers.count) else { throw refuse("it has \(manifest.layers.count) layers") }
        var byName: [String: OCIDescriptor] = [:]
        for layer in manifest.layers {
            let name = layer.annotations?[RemoteArtifact.title] ?? ""
            guard RemoteArtifact.isSafeFileName(name) else { throw refuse("a layer is titled \"\(name)\", not a file name") }
            guard byName.updateValue(layer, forKey: name) == nil else { throw refuse("two layers are titled \(name)") }
            guard layer.size >= 0, RegistryReference.isDigest(layer.digest) else { throw refuse("layer \(name) has a bad descriptor") }
        }
        let primaries = [ProviderArtifact.fileName, ImageFiles.manifest, ImageFiles.disk].filter { byName[$0] != nil }
        guard let primary = primaries.first, byName[primary]?.digest == "sha256:" + digest else {
            throw refuse("no file of it has the digest the catalog records (\(digest.prefix(12)))")
        }
        var listed: [String: String] = [:]
        if primary != ImageFiles.disk {
            // The listing itself is small; fetch and check it before anything large.
            guard let listing = byName[primary], listing.size <= 1 << 20 else { throw refuse("\(primary) is too large") }
            let data = try await client.smallBlob(listing)
            do {
                if primary == ProviderArtifact.fileName {
                    listed = try JSONDecoder().decode(ProviderArtifact.self, from: data).files
                } else {
                    listed = try JSONDecoder().decode(BlobManifest.self, from: data).files
                }
            } catch {
                throw refuse("\(primary) cannot be read")
            }
        }
        let others = Set(byName.keys).subtracting([primary])
        guard others == Set(listed.keys) else {
            throw refuse(
                "its files (\(others.sorted().joined(separator: ", "))) are not those \(primary == ImageFiles.disk ? "a lone disk has" : primary + " lists")"
            )
        }
        for (name, hex) in listed where byName[name]?.digest != "sha256:" + hex {
            throw refuse("\(name) has another digest than \(primary) lists")
        }
        return manifest.layers
    }

    /// Refuses a pull that cannot fit: a registry could claim any size.
    static func checkSpace(for layers: [OCIDescriptor], at directory: String, location: RemoteLocation) throws {
        var info = statvfs()
        guard statvfs(directory, &info) == 0 else { return }
        let available = Int64(info.f_bavail) * Int64(info.f_frsize)
        let needed = layers.reduce(Int64(0)) { $0 + $1.size }
        guard needed < available else {
            throw KilnError(
                .io,
                "pulling from \(location) needs \(ByteCount.human(needed)) and \(directory) has \(ByteCount.human(available)) free")
        }
    }

    /// One fetch of an image's record at a time, within this process (sibling builds on one
    /// parent) and across processes on this store (a lock beside the records).
    private func pullRecordOnce(_ image: ImageRecord, files: [RemoteArtifact.RecordFile]) async throws -> Bool {
        try await once("record:" + image.name) {
            try FileManager.default.createDirectory(atPath: self.store.provenanceDirectory, withIntermediateDirectories: true)
            let lock = try await FileLock.acquire(self.store.provenanceDirectory + "/.pull-" + image.name + ".lock")
            defer { withExtendedLifetime(lock) {} }
            // What another pull fetched meanwhile is not fetched again.
            let still = files.filter { !FileManager.default.fileExists(atPath: $0.path(in: self.store, for: image)) }
            return still.isEmpty ? false : try await self.pullRecord(image, files: still)
        }
    }

    /// Fetches the wanted files of the image's build record (the newest one the remote lists),
    /// each checked against its digest; false when the remote has none.
    func pullRecord(_ image: ImageRecord, files: [RemoteArtifact.RecordFile]) async throws -> Bool {
        guard let tagged = try await client.fetchManifest(image.name) else { return false }
        let records = try await client.referrers(of: tagged.digest).filter { $0.artifactType == RemoteArtifact.recordType }
        guard let newest = records.last, let fetched = try await client.fetchManifest(newest.digest) else { return false }
        let manifest = try fetched.decode()
        guard manifest.subject?.digest == tagged.digest else { return false }
        var got = false
        for file in files {
            guard let layer = manifest.layers.first(where: { $0.annotations?[RemoteArtifact.title] == file.rawValue }) else {
                continue
            }
            let path = file.path(in: store, for: image)
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try await client.downloadBlob(layer, to: path)
            got = true
        }
        return got
    }
}

// MARK: Checking

extension Remote {
    /// What is wrong with the blob `digest` in the remote (for `kiln verify` when this store
    /// does not hold it): its manifest must be there and be that blob, every layer present;
    /// a signed image's build record must carry the signature.
    public func problems(of image: ImageRecord?, digest: String) async -> [String] {
        do {
            guard let fetched = try await client.fetchManifest(RemoteArtifact.blobTag(digest)) else {
                return ["not in this store, nor in \(location) (no \(RemoteArtifact.blobTag(digest)))"]
            }
            var problems: [String] = []
            for layer in try await checkedLayers(try fetched.decode(), digest: digest)
            where try await !client.blobExists(layer.digest) {
                problems.append("\(location): layer \(layer.annotations?[RemoteArtifact.title] ?? layer.digest) is missing")
            }
            if let image, try store.catalog.signer(of: image.name) != nil, try await !recordHasSignature(image) {
                problems.append("\(location): \(image.name) was signed, but its build record there has no signature")
            }
            return problems
        } catch {
            return ["\(location): \((error as? KilnError)?.message ?? "\(error)")"]
        }
    }

    private func recordHasSignature(_ image: ImageRecord) async throws -> Bool {
        guard let tagged = try await client.fetchManifest(image.name) else { return false }
        let records = try await client.referrers(of: tagged.digest).filter { $0.artifactType == RemoteArtifact.recordType }
        guard let newest = records.last, let fetched = try await client.fetchManifest(newest.digest) else { return false }
        return try fetched.decode().layers.contains {
            $0.annotations?[RemoteArtifact.title] == RemoteArtifact.RecordFile.signature.rawValue
        }
    }
}

// MARK: Deleting

extension Remote {
    /// What deleting an image's manifests came to.
    public struct Deletion: Sendable, Equatable {
        /// Manifest digests the registry deleted.
        public var deleted: [String] = []
        /// The registry's refusals (deletes turned off): nothing more kiln can do.
        public var refused: [String] = []
    }

    /// Deletes the manifests of a purged image: its name tag, its build records and their
    /// fallback index, and its blob's `kiln-blob-` manifest unless another image still needs
    /// that blob (`keepBlob`). Layers stay until the registry's own garbage collection, as
    /// every registry does it.
    public func delete(_ image: ImageRecord, keepBlob: Bool) async throws -> Deletion {
        var result = Deletion()
        func remove(_ digest: String, _ what: String) async throws {
            switch try await client.deleteManifest(digest) {
            case .deleted: result.deleted.append(digest)
            case .absent: break
            case .refused(let why): result.refused.append("\(what): \(why)")
            }
        }
        let blob = try await client.fetchManifest(RemoteArtifact.blobTag(image.digest))
        if let tagged = try await client.fetchManifest(image.name) {
            for record in try await client.referrers(of: tagged.digest) where record.artifactType == RemoteArtifact.recordType {
                try await remove(record.digest, "the build record of \(image.name)")
            }
            if let index = try await client.fetchManifest(RegistryClient.referrersTag(tagged.digest)) {
                try await remove(index.digest, "the referrers index of \(image.name)")
            }
            // A registry deletes a manifest with every tag on it: one the blob's tag shares stays
            // while the blob is needed (only the name's tag could go, and tags are not deleted alone).
            if !keepBlob || tagged.digest != blob?.digest { try await remove(tagged.digest, image.name) }
        }
        if !keepBlob, let blob { try await remove(blob.digest, RemoteArtifact.blobTag(image.digest)) }
        return result
    }
}
