import Foundation
import KilnCore
import KilnModel

/// `kiln verify`: re-hashes blobs and checks the catalog against the store, so "nothing was
/// lost" is a checked statement rather than a hope.
public enum Verifier {
    public struct Result: Sendable, Codable {
        /// An image name, or `source <digest>` for a source disk.
        public let subject: String
        public let digest: String
        /// Empty when everything checked out.
        public let problems: [String]
        /// The key whose signature over the image's provenance held; nil when unsigned.
        public var signedBy: String? = nil

        enum CodingKeys: String, CodingKey {
            case subject, digest, problems
            case signedBy = "signed_by"
        }
    }

    public struct Report: Sendable, Codable {
        public var results: [Result] = []
        /// Not wrong, but worth knowing: leftovers that `kiln gc` removes.
        public var notes: [String] = []
        public var problemCount: Int { results.reduce(0) { $0 + $1.problems.count } }
    }

    /// The check export, push and a build on a parent make before they trust an image's
    /// bytes, the same as `kiln verify NAME`: the image and every blob its disk stands on
    /// (present, read-only, hashing to their names, each backed by the blob the catalog says),
    /// its catalog row, and its provenance and signature (required once it was signed).
    /// - Parameter also: keys trusted besides the store's, such as the one the build signs with.
    public static func trust(_ store: Store, _ image: ImageRecord, also: [PublicSigningKey] = []) async throws {
        // The store's keys, and the key this kiln signs with (it may live outside the store).
        var trusted = try store.trustedKeys() + also
        if let path = store.defaultSigningKeyPath(), let key = try? SigningKey.load(path) { trusted.append(key.publicKey) }
        let report = try await run(store, name: image.name, trusted: trusted)
        let problems = report.results.flatMap { result in result.problems.map { "\(result.subject): \($0)" } }
        guard problems.isEmpty else {
            throw KilnError(
                .storeInconsistent,
                "\(image.name) fails verification, so kiln will not use its bytes: \(problems.joined(separator: "; ")) (kiln verify \(image.name))"
            )
        }
    }

    /// Checks `name` (an image, with every blob under it) or, when nil, every image whose disk
    /// the catalog says exists, every recorded source disk, and what lies in the store unnamed.
    ///
    /// An image with a provenance record must agree with it, and a signed one must carry a
    /// signature by one of `trusted` over that record (which names the disk's digest): a blob,
    /// a catalog row or a record changed after signing each fail. `requireSignature` makes an
    /// unsigned image a problem too.
    /// - Parameter remote: with a remote, a blob this store does not hold is checked there
    ///   instead (the local store is then a cache): given the image (nil for a source disk) and
    ///   the digest, it returns the problems it found.
    public static func run(
        _ store: Store, name: String?, trusted: [PublicSigningKey] = [], requireSignature: Bool = false,
        remote: (@Sendable (ImageRecord?, String) async -> [String])? = nil
    ) async throws -> Report {
        var report = Report()
        var subjects: [(String, String, ImageRecord?)] = []
        let images: [ImageRecord]
        let sources: [SourceRecord]
        if let name {
            guard let image = try store.catalog.image(named: name) else {
                throw KilnError(.notFound, "no image named '\(name)' (kiln images lists them)")
            }
            guard !image.purged else { throw KilnError(.invalidInput, "\(name) is purged: its disk was removed on purpose") }
            // The image, then each blob its disk stands on: the chain's rows alone are read, as
            // every export and every build on a parent asks this of a catalog of any size.
            var chain: [ImageRecord] = []
            var next: String? = image.digest
            var seen: Set<String> = []
            while let digest = next, seen.insert(digest).inserted {
                let record = digest == image.digest ? image : try store.catalog.image(digest: digest)
                if let record { chain.append(record) }
                subjects.append((record?.name ?? "source \(digest.prefix(12))", digest, record))
                next = record?.backingDigest
            }
            // And each named parent, should a row name one the disk does not stand on.
            var rows = chain
            for record in chain {
                if let parent = record.parent, !rows.contains(where: { $0.name == parent }),
                    let row = try store.catalog.image(named: parent)
                {
                    rows.append(row)
                }
            }
            (images, sources) = (rows, [])
        } else {
            (images, sources) = (try store.catalog.images(), try store.catalog.sources())
            for image in images where !image.purged { subjects.append((image.name, image.digest, image)) }
            let imageDigests = Set(images.map(\.digest))
            for source in sources where !imageDigests.contains(source.digest) {
                subjects.append(("source \(source.digest.prefix(12))", source.digest, nil))
            }
        }
        let byName = Dictionary(images.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        // Each blob is hashed once, however many images name it.
        var hashed: [String: [String]] = [:]
        for (subject, digest, record) in subjects {
            if let remote, !FileManager.default.fileExists(atPath: Store.primaryFile(in: store.blobDirectory(digest: digest))) {
                let problems = await remote(record, digest) + (record.map { checkRow($0, byName: byName) } ?? [])
                report.results.append(Result(subject: subject + " (remote)", digest: digest, problems: problems, signedBy: nil))
                continue
            }
            let blobProblems: [String]
            if let known = hashed[digest] {
                blobProblems = known
            } else {
                blobProblems = await checkBlob(store, digest: digest, expectedBacking: record?.backingDigest)
                hashed[digest] = blobProblems
            }
            var problems = blobProblems
            var signedBy: String?
            if let record {
                problems += checkRow(record, byName: byName)
                let provenance = checkProvenance(store, record, trusted: trusted, requireSignature: requireSignature)
                problems += provenance.problems
                signedBy = provenance.signedBy
            }
            report.results.append(Result(subject: subject, digest: digest, problems: problems, signedBy: signedBy))
        }
        if name == nil { report.notes = leftovers(store, images: images, sources: sources) }
        return report
    }

    /// The blob's files: present, read-only, hashing to the name, backed by the right blob.
    static func checkBlob(_ store: Store, digest: String, expectedBacking: String?) async -> [String] {
        let directory = store.blobDirectory(digest: digest)
        let disk = Store.primaryFile(in: directory)
        guard FileManager.default.fileExists(atPath: disk) else { return ["blob missing: \(disk) does not exist"] }
        var problems: [String] = []
        // The same check a build makes before it boots (hashed once per process and file).
        do {
            try store.verifyBlob(digest)
        } catch let error as KilnError {
            problems.append("blob damaged: \(error.message)")
        } catch {
            problems.append("blob unreadable: \(error)")
        }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
            let attributes = try? FileManager.default.attributesOfItem(atPath: directory + "/" + name)
            if let mode = attributes?[.posixPermissions] as? Int, mode & 0o222 != 0 {
                problems.append("blob writable: \(directory)/\(name) has mode \(String(mode, radix: 8)) (sealed blobs are read-only)")
            }
        }
        // A provider's artifact is not a disk: its files were checked above.
        if disk.hasSuffix("/" + ProviderArtifact.fileName) { return problems }
        return problems + (await checkDisk(store, directory + "/" + Store.diskName, expectedBacking: expectedBacking))
    }

    /// What QEMU will open under a blob's disk must be the blob the catalog says.
    static func checkDisk(_ store: Store, _ disk: String, expectedBacking: String?) async -> [String] {
        var problems: [String] = []
        if let info = try? await DiskImage.info(disk, format: "qcow2", shared: true) {
            let backing = info.backingFilename
            if let dataFile = info.dataFile { problems.append("the disk keeps its data in an external file (\(dataFile))") }
            let expected = expectedBacking.map { "../\($0)/\(Store.diskName)" }
            if backing != expected {
                problems.append("backing file is \(backing ?? "none"), the catalog says \(expected ?? "none")")
            } else if let expectedBacking,
                !FileManager.default.fileExists(atPath: store.diskPath(digest: expectedBacking))
            {
                problems.append("the blob it is an overlay on (\(expectedBacking.prefix(12))) is missing")
            }
        } else {
            problems.append("qemu-img cannot read \(disk)")
        }
        return problems
    }

    public static func checkProvenance(
        _ store: Store, _ image: ImageRecord, trusted: [PublicSigningKey], requireSignature: Bool
    ) -> (problems: [String], signedBy: String?) {
        // An image that was signed stays signed: a missing record or signature is damage (or
        // someone hiding a change), not an unsigned image.
        let signer: String?
        do {
            signer = try store.catalog.signer(of: image.name)
        } catch {
            return (["cannot read who signed it: \(error)"], nil)
        }
        let requireSignature = requireSignature || signer != nil
        let gone = signer.map { "its provenance was signed by key \($0), and " } ?? ""
        guard let data = store.provenanceData(of: image.name) else {
            guard requireSignature else { return ([], nil) }
            return ([gone.isEmpty ? "unsigned: no provenance record (kiln sign \(image.name))" : gone + "the record is gone"], nil)
        }
        var problems: [String] = []
        do {
            problems += try Provenance.decode(data, path: store.provenancePath(of: image.name)).mismatches(with: image)
        } catch {
            problems.append("\(error)")
        }
        let signaturePath = store.signaturePath(of: image.name)
        guard FileManager.default.fileExists(atPath: signaturePath) else {
            if requireSignature { problems.append(gone.isEmpty ? "unsigned (kiln sign \(image.name))" : gone + "the signature is gone") }
            return (problems, nil)
        }
        do {
            let envelope = try SignatureEnvelope.load(signaturePath)
            if let problem = envelope.problem(payload: data, subject: image.name, trusted: trusted) {
                problems.append("signature: " + problem)
                return (problems, nil)
            }
            // Images signed before kiln wrote attestations have none; one that exists must hold.
            let attestation = store.attestationPath(of: image.name)
            if FileManager.default.fileExists(atPath: attestation),
                let problem = try DSSEEnvelope.load(attestation).check(subject: image.name, sha256: image.digest, trusted: trusted).problem
            {
                problems.append("attestation: " + problem)
            }
            return (problems, envelope.keyID)
        } catch {
            problems.append("signature: \(error)")
            return (problems, nil)
        }
    }

    /// The catalog row: its parent exists and is the blob the disk stands on.
    static func checkRow(_ image: ImageRecord, byName: [String: ImageRecord]) -> [String] {
        guard let parentName = image.parent else { return [] }
        guard let parent = byName[parentName] else {
            return ["parent \(parentName) is not in the catalog"]
        }
        var problems: [String] = []
        if parent.digest != image.backingDigest {
            problems.append(
                "parent \(parentName) has blob \(parent.digest.prefix(12)), the disk stands on \(image.backingDigest?.prefix(12) ?? "nothing")"
            )
        }
        if parent.purged { problems.append("parent \(parentName) is purged but this image still stands on it") }
        return problems
    }

    /// Directories in the store that no catalog row names.
    static func leftovers(_ store: Store, images: [ImageRecord], sources: [SourceRecord]) -> [String] {
        let known = Set(images.filter { !$0.purged }.map(\.digest) + sources.map(\.digest))
        var notes: [String] = []
        for name in ((try? FileManager.default.contentsOfDirectory(atPath: store.imagesDirectory)) ?? []).sorted() {
            if name.hasPrefix(".tmp-") {
                notes.append("staging directory of an unfinished build: images/\(name) (kiln gc removes it)")
            } else if name.hasPrefix(".pull-") {
                if !name.hasSuffix(".lock") {
                    notes.append("an interrupted pull: images/\(name) (the next pull resumes it; kiln gc removes it)")
                }
            } else if !known.contains(name) {
                notes.append("blob no image or source names: images/\(name)")
            }
        }
        return notes
    }
}
