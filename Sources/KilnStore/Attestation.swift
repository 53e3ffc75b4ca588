import Crypto
import Foundation
import KilnCore
import KilnModel

/// kiln's provenance in the formats outside tools check: an in-toto Statement v1 whose predicate
/// is SLSA Provenance v1, in a DSSE envelope signed with kiln's ed25519 key (docs/provenance.md).
/// kiln's own record (`kiln-provenance/v1`) stays what the store signs and `kiln verify` reads;
/// the statement is made from that record's bytes, and names its digest as a byproduct.
public struct InTotoStatement: Codable, Sendable, Equatable {
    public static let type = "https://in-toto.io/Statement/v1"
    public static let slsaProvenance = "https://slsa.dev/provenance/v1"
    /// kiln has no web home to point a build type at; a URN names it without pretending to.
    public static let buildType = "urn:kiln:build-type:image:v1"

    public struct ResourceDescriptor: Codable, Sendable, Equatable {
        public var name: String?
        public var uri: String?
        public var digest: [String: String]?
        public var mediaType: String?
    }

    public struct Predicate: Codable, Sendable, Equatable {
        public struct BuildDefinition: Codable, Sendable, Equatable {
            public var buildType: String
            public var externalParameters: [String: JSONValue]
            public var internalParameters: [String: JSONValue]
            public var resolvedDependencies: [ResourceDescriptor]
        }
        public struct RunDetails: Codable, Sendable, Equatable {
            public struct Builder: Codable, Sendable, Equatable {
                public var id: String
                public var version: [String: String]
            }
            public struct Metadata: Codable, Sendable, Equatable {
                public var invocationId: String
                public var startedOn: Date?
                public var finishedOn: Date
            }
            public var builder: Builder
            public var metadata: Metadata
            public var byproducts: [ResourceDescriptor]
        }
        public var buildDefinition: BuildDefinition
        public var runDetails: RunDetails
    }

    public var type = Self.type
    public var subject: [ResourceDescriptor]
    public var predicateType = Self.slsaProvenance
    public var predicate: Predicate

    enum CodingKeys: String, CodingKey {
        case type = "_type"
        case subject, predicateType, predicate
    }

    /// The statement for `subject` (an image, or an export of it: its file name and SHA-256),
    /// made from the image's stored provenance record.
    public static func make(subject name: String, sha256: String, record: Data, provenance: Provenance) -> InTotoStatement {
        func hex(_ digest: String) -> [String: String] { ["sha256": String(digest.dropFirst(digest.hasPrefix("sha256:") ? 7 : 0))] }
        var external: [String: JSONValue] = [
            "family": .string(provenance.image.family),
            "template": .object(["digest": .object(["sha256": .string(String(provenance.templateDigest.dropFirst(7)))])]),
        ]
        if let inputs = provenance.build.inputs { external["inputs"] = .object(inputs.mapValues(JSONValue.string)) }
        if let commit = provenance.origin?.commit { external["commit"] = .string(commit) }
        var internals: [String: JSONValue] = ["source_kind": .string(provenance.source.kind)]
        if let provider = provenance.build.provider { internals["provider"] = .string(provider) }
        if let key = provenance.build.key { internals["build_key"] = .string(key) }
        var dependencies = provenance.parents.map { ResourceDescriptor(name: $0.name, digest: hex($0.digest)) }
        if let source = provenance.source.digest { dependencies.append(ResourceDescriptor(name: "source-disk", digest: hex(source))) }
        let builder = provenance.origin?.jobURL ?? "urn:kiln:builder:" + (provenance.origin?.host ?? "local")
        return InTotoStatement(
            subject: [ResourceDescriptor(name: name, digest: hex(sha256))],
            predicate: Predicate(
                buildDefinition: .init(
                    buildType: buildType, externalParameters: external, internalParameters: internals,
                    resolvedDependencies: dependencies),
                runDetails: .init(
                    builder: .init(id: builder, version: ["kiln": provenance.kilnVersion]),
                    metadata: .init(
                        invocationId: provenance.build.id, startedOn: provenance.build.started, finishedOn: provenance.build.finished),
                    byproducts: [
                        ResourceDescriptor(
                            name: "kiln-provenance", digest: ["sha256": Hashing.sha256Hex(record)], mediaType: "application/json")
                    ])))
    }

    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return try encoder.encode(self)
    }

    public static func decode(_ data: Data) throws -> InTotoStatement {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(InTotoStatement.self, from: data)
    }
}

/// A JSON value of the statement's free-form parameters.
public indirect enum JSONValue: Codable, Sendable, Equatable {
    case string(String)
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self) {
            self = .string(text)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let text): try container.encode(text)
        case .object(let object): try container.encode(object)
        }
    }
}

/// A DSSE envelope (github.com/secure-systems-lab/dsse): the payload, its type, and
/// signatures over the pre-authentication encoding of both. Written one per line in
/// `*.intoto.jsonl`, as SLSA's tools expect.
public struct DSSEEnvelope: Codable, Sendable, Equatable {
    public static let inTotoPayloadType = "application/vnd.in-toto+json"

    public struct Signature: Codable, Sendable, Equatable {
        public var keyid: String
        public var sig: String
    }

    public var payload: String
    public var payloadType: String
    public var signatures: [Signature]

    /// `DSSEv1 <len(type)> <type> <len(body)> <body>`: what is signed, so that neither the type
    /// nor the body can be swapped under a signature.
    public static func pae(type: String, body: Data) -> Data {
        Data("DSSEv1 \(type.utf8.count) \(type) \(body.count) ".utf8) + body
    }

    public static func sign(_ statement: InTotoStatement, with key: SigningKey) throws -> DSSEEnvelope {
        let body = try statement.encoded()
        let signature = try key.privateKey.signature(for: pae(type: inTotoPayloadType, body: body))
        return DSSEEnvelope(
            payload: body.base64EncodedString(), payloadType: inTotoPayloadType,
            signatures: [Signature(keyid: key.publicKey.id, sig: signature.base64EncodedString())])
    }

    /// One line of JSON and a newline: the `.intoto.jsonl` form.
    public func line() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self) + Data("\n".utf8)
    }

    /// The first envelope of a `.intoto.jsonl` file.
    public static func load(_ path: String) throws -> DSSEEnvelope {
        guard let data = FileManager.default.contents(atPath: path) else { throw KilnError(.notFound, "no attestation at \(path)") }
        let first = data.split(separator: UInt8(ascii: "\n")).first.map { Data($0) } ?? Data()
        do { return try JSONDecoder().decode(DSSEEnvelope.self, from: first) } catch {
            throw KilnError(.storeInconsistent, "\(path) is not a DSSE envelope", cause: error)
        }
    }

    /// The statement, when a trusted key signed it and it names `subject` with `sha256`; else
    /// why not, and the signer's key id when it verified.
    public func check(subject: String, sha256: String, trusted: [PublicSigningKey]) -> (problem: String?, keyID: String?) {
        guard payloadType == Self.inTotoPayloadType, let body = Data(base64Encoded: payload) else {
            return ("the attestation's payload is not an in-toto statement", nil)
        }
        let message = Self.pae(type: payloadType, body: body)
        let verified = signatures.first { signature in
            guard let key = trusted.first(where: { $0.id == signature.keyid }), let raw = Data(base64Encoded: signature.sig) else {
                return false
            }
            return key.key.isValidSignature(raw, for: message)
        }
        guard let verified else {
            let ids = signatures.map(\.keyid).joined(separator: ", ")
            return ("the attestation is not signed by a trusted key (signed by: \(ids.isEmpty ? "nobody" : ids))", nil)
        }
        guard let statement = try? InTotoStatement.decode(body) else { return ("the attestation's statement cannot be read", nil) }
        let hex = String(sha256.dropFirst(sha256.hasPrefix("sha256:") ? 7 : 0))
        guard statement.subject.contains(where: { $0.name == subject && $0.digest?["sha256"] == hex }) else {
            return ("the attestation names another subject or digest than \(subject) sha256:\(hex.prefix(12))…", nil)
        }
        return (nil, verified.keyid)
    }
}

extension Store {
    /// The image's signed SLSA provenance, beside its record.
    public func attestationPath(of name: String) -> String { provenanceDirectory + "/" + name + ".intoto.jsonl" }

    /// Signs an in-toto statement for the image's blob, made from its stored record.
    func attest(_ image: ImageRecord, record: Data, with key: SigningKey) throws {
        let provenance = try Provenance.decode(record, path: provenancePath(of: image.name))
        let statement = InTotoStatement.make(subject: image.name, sha256: image.digest, record: record, provenance: provenance)
        try DSSEEnvelope.sign(statement, with: key).line().write(
            to: URL(fileURLWithPath: attestationPath(of: image.name)), options: .atomic)
    }
}
