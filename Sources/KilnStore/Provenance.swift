import Foundation
import KilnCore
import KilnModel

/// Where an image came from, written when its build commits it and kept beside the catalog in
/// `provenance/<name>.json` (docs/provenance.md). Its bytes are what a signature covers, so it
/// is written once and read back as it is, never rebuilt from the catalog for a check.
public struct Provenance: Codable, Sendable, Equatable {
    public static let typeName = "kiln-provenance/v1"

    public struct Image: Codable, Sendable, Equatable {
        public var name: String
        public var family: String
        public var version: String
        /// `sha256:` of the image's disk blob.
        public var digest: String
        public var size: Int64
        public var created: Date
        public var description: String?
        public var labels: [String: String]
    }

    public struct Build: Codable, Sendable, Equatable {
        public var id: String
        public var key: String?
        public var inputs: [String: String]?
        public var provider: String?
        public var started: Date?
        public var finished: Date
    }

    public struct Parent: Codable, Sendable, Equatable {
        public var name: String
        public var digest: String
    }

    public struct Source: Codable, Sendable, Equatable {
        /// debootstrap, file, url or image.
        public var kind: String
        /// The source disk blob a base's disk is an overlay on.
        public var digest: String?
    }

    public var type = Self.typeName
    public var kilnVersion: String
    public var image: Image
    public var templateDigest: String
    public var build: Build
    public var source: Source
    /// Nearest first, down to the base.
    public var parents: [Parent]
    public var origin: BuildOrigin?
    /// The software bill of materials: what the guest's package database listed.
    public var packages: [InstalledPackage]

    enum CodingKeys: String, CodingKey {
        case type = "_type"
        case kilnVersion = "kiln_version"
        case image
        case templateDigest = "template_digest"
        case build, source, parents, origin, packages
    }

    /// What the catalog knows of `image`, as its build records it.
    public static func make(for image: ImageRecord, catalog: Catalog, provider: String?) throws -> Provenance {
        var parents: [Parent] = []
        var next = image.parent
        while let name = next, parents.count < 64 {
            guard let parent = try catalog.image(named: name) else { break }
            parents.append(Parent(name: parent.name, digest: "sha256:" + parent.digest))
            next = parent.parent
        }
        let inputs = image.keyInputs.flatMap { try? JSONDecoder().decode([String: String].self, from: Data($0.utf8)) }
        let started = try catalog.build(id: image.buildID)?.started
        return Provenance(
            kilnVersion: KilnVersion.current,
            image: Image(
                name: image.name, family: image.family, version: image.version, digest: "sha256:" + image.digest,
                size: image.size, created: image.created, description: image.description, labels: image.labelDictionary),
            templateDigest: "sha256:" + image.templateHash,
            build: Build(
                id: image.buildID, key: image.buildKey.map { "sha256:" + $0 }, inputs: inputs, provider: provider,
                started: started, finished: image.created),
            source: Source(kind: image.sourceKind, digest: image.parent == nil ? image.backingDigest.map { "sha256:" + $0 } : nil),
            parents: parents, origin: image.buildOrigin, packages: try catalog.packages(of: image.name)?.packages ?? [])
    }

    /// Sorted keys and ISO 8601 dates: the same record always gives the same bytes.
    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return try encoder.encode(self) + Data("\n".utf8)
    }

    public static func decode(_ data: Data, path: String) throws -> Provenance {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do { return try decoder.decode(Provenance.self, from: data) } catch {
            throw KilnError(.storeInconsistent, "\(path) is not a kiln provenance record", cause: error)
        }
    }

    /// The problems that make the record disagree with the catalog's row for the image.
    public func mismatches(with image: ImageRecord) -> [String] {
        var problems: [String] = []
        if self.image.name != image.name { problems.append("provenance names \(self.image.name), not \(image.name)") }
        if self.image.digest != "sha256:" + image.digest {
            problems.append("provenance records disk \(self.image.digest), the catalog sha256:\(image.digest)")
        }
        if templateDigest != "sha256:" + image.templateHash { problems.append("provenance records another template digest") }
        if build.key != image.buildKey.map({ "sha256:" + $0 }) { problems.append("provenance records another build key") }
        if parents.first?.name != image.parent { problems.append("provenance records another parent") }
        return problems
    }
}

extension Store {
    public var provenanceDirectory: String { root + "/provenance" }

    public func provenancePath(of name: String) -> String { provenanceDirectory + "/" + name + ".json" }

    public func signaturePath(of name: String) -> String { provenanceDirectory + "/" + name + ".sig" }

    /// The stored record's bytes, or nil for an image built before kiln kept them.
    public func provenanceData(of name: String) -> Data? {
        FileManager.default.contents(atPath: provenancePath(of: name))
    }

    /// Writes the record of a newly committed image; an existing record is never replaced,
    /// since a signature may cover it.
    @discardableResult
    public func recordProvenance(of image: ImageRecord, provider: String?) throws -> Data {
        if let existing = provenanceData(of: image.name) { return existing }
        let data = try Provenance.make(for: image, catalog: catalog, provider: provider).encoded()
        try FileManager.default.createDirectory(atPath: provenanceDirectory, withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: provenancePath(of: image.name)), options: .atomic)
        return data
    }
}
