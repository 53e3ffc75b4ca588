import Foundation
import KilnCore
import KilnModel
import KilnStore

/// An image's package list as an SPDX 2.3 JSON document: the form SBOM tools read.
public enum SPDX {
    public static func document(_ provenance: Provenance) throws -> Data {
        let image = provenance.image
        let imageID = "SPDXRef-Image"
        var packages: [[String: Any]] = [
            [
                "SPDXID": imageID, "name": image.name, "versionInfo": image.version, "downloadLocation": "NOASSERTION",
                "filesAnalyzed": false, "primaryPackagePurpose": "OPERATING-SYSTEM",
                "checksums": [["algorithm": "SHA256", "checksumValue": String(image.digest.dropFirst("sha256:".count))]],
                "comment": "kiln image of family \(image.family), disk \(image.digest)",
            ]
        ]
        var relationships: [[String: Any]] = [
            ["spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": imageID]
        ]
        for package in provenance.packages {
            let id = "SPDXRef-deb-" + sanitize(package.name) + "-" + sanitize(package.architecture)
            let purl =
                "pkg:deb/debian/\(percent(package.name))@\(percent(package.version))?arch=\(percent(package.architecture))"
                + (package.source == package.name ? "" : "&upstream=\(percent(package.source))")
            packages.append([
                "SPDXID": id, "name": package.name, "versionInfo": package.version, "downloadLocation": "NOASSERTION",
                "filesAnalyzed": false, "sourceInfo": "built from source package \(package.source) \(package.sourceVersion)",
                "externalRefs": [["referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl]],
            ])
            relationships.append(["spdxElementId": imageID, "relationshipType": "CONTAINS", "relatedSpdxElement": id])
        }
        let document: [String: Any] = [
            "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT", "name": image.name,
            // Unique per image and stable across exports of it.
            "documentNamespace": "urn:kiln:image:\(image.name):\(image.digest.dropFirst("sha256:".count))",
            "creationInfo": [
                "created": ISO8601DateFormatter().string(from: image.created), "creators": ["Tool: kiln-\(provenance.kilnVersion)"],
            ],
            "packages": packages, "relationships": relationships,
        ]
        return try JSONSerialization.data(withJSONObject: document, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }

    /// SPDX identifiers allow letters, digits, `.` and `-` only.
    static func sanitize(_ text: String) -> String {
        String(text.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-") ? $0 : "-" })
    }

    static func percent(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: ".-_~"))) ?? text
    }
}

/// What kiln writes beside an export: the image's provenance, its SPDX SBOM, a signature when
/// a key is at hand, and an entry in `kiln-manifest.json` (like Packer's packer-manifest.json,
/// one entry per artifact, replaced when the same path is exported again).
public enum ExportSidecars {
    public struct Statement: Codable, Sendable, Equatable {
        public var artifact: String
        public var digest: String
        public var provenanceDigest: String

        enum CodingKeys: String, CodingKey {
            case artifact, digest
            case provenanceDigest = "provenance_digest"
        }

        /// The signed bytes: rebuilt by `kiln verify --artifact` from the files themselves.
        public func encoded() throws -> Data {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            return try encoder.encode(self)
        }
    }

    public static func provenancePath(_ artifact: String) -> String { artifact + ".provenance.json" }
    public static func sbomPath(_ artifact: String) -> String { artifact + ".spdx.json" }
    public static func signaturePath(_ artifact: String) -> String { artifact + ".sig" }
    /// SLSA provenance in a DSSE envelope, named as SLSA's verifiers look for it.
    public static func attestationPath(_ artifact: String) -> String { artifact + ".intoto.jsonl" }

    /// Writes the files beside `result.path`; returns their paths.
    public static func write(_ result: ExportResult, image: ImageRecord, store: Store, key: SigningKey?) throws -> [String] {
        let provenanceData = try store.recordProvenance(of: image, provider: nil)
        let provenance = try Provenance.decode(provenanceData, path: store.provenancePath(of: image.name))
        var sidecars = [
            (path: provenancePath(result.path), data: provenanceData),
            (path: sbomPath(result.path), data: try SPDX.document(provenance)),
        ]
        let name = (result.path as NSString).lastPathComponent
        if let key {
            let statement = Statement(
                artifact: name, digest: result.digest, provenanceDigest: "sha256:" + Hashing.sha256Hex(provenanceData))
            let envelope = try key.sign(try statement.encoded(), subject: name)
            let attestation = InTotoStatement.make(subject: name, sha256: result.digest, record: provenanceData, provenance: provenance)
            sidecars.append((path: attestationPath(result.path), data: try DSSEEnvelope.sign(attestation, with: key).line()))
            sidecars.append((path: signaturePath(result.path), data: try envelope.encoded()))
        }
        for sidecar in sidecars { try sidecar.data.write(to: URL(fileURLWithPath: sidecar.path), options: .atomic) }
        // Listed from the bytes just written: no second read of them.
        let files = sidecars.map {
            ExportedFile(
                name: ($0.path as NSString).lastPathComponent, size: Int64($0.data.count),
                sha256: "sha256:" + Hashing.sha256Hex($0.data))
        }
        try recordInManifest(result, image: image, sidecars: files)
        return sidecars.map(\.path) + [manifestPath(result.path)]
    }

    /// Re-hashes an exported artifact (every blob of an OCI layout) and checks the signature
    /// beside it against `trusted`. Returns the problems (none: it is what kiln exported and
    /// signed) and the signing key's id.
    public static func verify(_ artifact: String, trusted: [PublicSigningKey]) throws -> (problems: [String], signedBy: String?) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: artifact, isDirectory: &isDirectory) else {
            throw KilnError(.notFound, "no artifact at \(artifact)")
        }
        var problems: [String] = []
        let digest: String
        if isDirectory.boolValue {
            let layout = OCILayout(path: artifact)
            let (descriptor, manifest, _) = try layout.manifest()
            digest = descriptor.digest
            for blob in [descriptor, manifest.config] + manifest.layers {
                let path = layout.blobPath(blob.digest)
                guard FileManager.default.fileExists(atPath: path) else {
                    problems.append("blob \(blob.digest) is missing")
                    continue
                }
                let actual = "sha256:" + (try Hashing.sha256Hex(fileAt: path))
                if actual != blob.digest { problems.append("blob \(blob.digest) hashes to \(actual)") }
            }
        } else {
            digest = "sha256:" + (try Hashing.sha256Hex(fileAt: artifact))
        }
        guard let provenance = FileManager.default.contents(atPath: provenancePath(artifact)) else {
            return (problems + ["no provenance beside it (\(provenancePath(artifact)))"], nil)
        }
        guard FileManager.default.fileExists(atPath: signaturePath(artifact)) else {
            return (problems + ["unsigned: no \(signaturePath(artifact))"], nil)
        }
        let name = (artifact as NSString).lastPathComponent
        let statement = Statement(artifact: name, digest: digest, provenanceDigest: "sha256:" + Hashing.sha256Hex(provenance))
        let envelope = try SignatureEnvelope.load(signaturePath(artifact))
        if let problem = envelope.problem(payload: try statement.encoded(), subject: name, trusted: trusted) {
            return (problems + ["signature: " + problem], nil)
        }
        if FileManager.default.fileExists(atPath: attestationPath(artifact)),
            let problem = try DSSEEnvelope.load(attestationPath(artifact)).check(subject: name, sha256: digest, trusted: trusted).problem
        {
            problems.append("attestation: " + problem)
        }
        return (problems, envelope.keyID)
    }

    public static func manifestPath(_ artifact: String) -> String {
        ((artifact as NSString).deletingLastPathComponent.isEmpty ? "." : (artifact as NSString).deletingLastPathComponent)
            + "/kiln-manifest.json"
    }

    static func recordInManifest(_ result: ExportResult, image: ImageRecord, sidecars: [ExportedFile]) throws {
        let path = manifestPath(result.path)
        var manifest: [String: Any] = [:]
        if let data = FileManager.default.contents(atPath: path) {
            guard let existing = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw KilnError(.invalidInput, "\(path) exists and is not a kiln manifest; kiln does not overwrite it")
            }
            manifest = existing
        }
        let name = (result.path as NSString).lastPathComponent
        var builds = (manifest["builds"] as? [[String: Any]] ?? []).filter { $0["artifact"] as? String != name }
        var entry: [String: Any] = [
            "name": image.family, "image": image.name, "builder_type": "kiln", "format": result.format.rawValue,
            "artifact": name, "artifact_id": result.digest, "disk_digest": "sha256:" + image.digest,
            "build_id": image.buildID, "build_time": Int(image.created.timeIntervalSince1970),
            "files": (result.files + sidecars).map { ["name": $0.name, "size": $0.size, "sha256": $0.sha256] as [String: Any] },
            "custom_data": image.labelDictionary,
        ]
        if let layers = result.layers { entry["layers"] = layers.map { ["image": $0.image, "digest": $0.digest, "diff_id": $0.diffID] } }
        builds.append(entry)
        manifest["builds"] = builds
        manifest["last_artifact"] = name
        try JSONSerialization.data(withJSONObject: manifest, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            .write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}
