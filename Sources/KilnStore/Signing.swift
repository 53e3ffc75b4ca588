import Crypto
import Foundation
import KilnCore
import KilnModel

/// An ed25519 key pair (swift-crypto) that signs images' provenance and exports.
///
/// Files are one line each, in the form OpenSSH uses for its keys (`kiln-ed25519 <base64>
/// <comment>`): readable, easy to paste into a CI secret, and no PEM parser needed.
public struct SigningKey: Sendable {
    public let privateKey: Curve25519.Signing.PrivateKey
    public var publicKey: PublicSigningKey { PublicSigningKey(privateKey.publicKey, comment: "") }

    static let privateTag = "kiln-ed25519-private"

    public static func generate() -> SigningKey { SigningKey(privateKey: .init()) }

    public static func load(_ path: String) throws -> SigningKey {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw KilnError(.notFound, "no signing key at \(path) (make one with kiln keys generate)")
        }
        let fields = text.split(whereSeparator: \.isWhitespace)
        guard fields.count >= 2, fields[0] == privateTag, let raw = Data(base64Encoded: String(fields[1])),
            let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: raw)
        else { throw KilnError(.invalidInput, "\(path) is not a kiln signing key") }
        return SigningKey(privateKey: key)
    }

    /// Writes `<base>.key` (mode 0600) and `<base>.pub`; refuses to replace a key unless `force`.
    public func write(base: String, comment: String, force: Bool) throws {
        let fm = FileManager.default
        for path in [base + ".key", base + ".pub"] where fm.fileExists(atPath: path) && !force {
            throw KilnError(.invalidInput, "\(path) exists; kiln keeps it (--force replaces it, and orphans what it signed)")
        }
        try fm.createDirectory(atPath: (base as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let secret = "\(Self.privateTag) \(privateKey.rawRepresentation.base64EncodedString()) \(comment)\n"
        guard fm.createFile(atPath: base + ".key.tmp", contents: Data(secret.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw KilnError(.io, "cannot write \(base).key")
        }
        guard rename(base + ".key.tmp", base + ".key") == 0 else {
            throw KilnError(.io, "cannot write \(base).key: \(String(cString: strerror(errno)))")
        }
        try PublicSigningKey(privateKey.publicKey, comment: comment).line.write(toFile: base + ".pub", atomically: true, encoding: .utf8)
    }

    /// Signs `payload`: an envelope naming the key, the payload's digest and the signature.
    public func sign(_ payload: Data, subject: String) throws -> SignatureEnvelope {
        let signature = try privateKey.signature(for: SignatureEnvelope.message(subject: subject, payload: payload))
        return SignatureEnvelope(
            subject: subject, payloadDigest: "sha256:" + Hashing.sha256Hex(payload), keyID: publicKey.id,
            publicKey: privateKey.publicKey.rawRepresentation.base64EncodedString(), signature: signature.base64EncodedString())
    }
}

public struct PublicSigningKey: Sendable {
    public let key: Curve25519.Signing.PublicKey
    public let comment: String

    public init(_ key: Curve25519.Signing.PublicKey, comment: String) {
        self.key = key
        self.comment = comment
    }

    static let tag = "kiln-ed25519"

    /// The first 16 hex digits of the key's SHA-256: short enough to show, long enough to tell keys apart.
    public var id: String { String(Hashing.sha256Hex(key.rawRepresentation).prefix(16)) }

    public var line: String { "\(Self.tag) \(key.rawRepresentation.base64EncodedString()) \(comment)\n" }

    public static func load(_ path: String) throws -> PublicSigningKey {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw KilnError(.notFound, "no public key at \(path)") }
        let fields = text.split(whereSeparator: \.isWhitespace)
        guard fields.count >= 2, fields[0] == tag, let raw = Data(base64Encoded: String(fields[1])),
            let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw)
        else { throw KilnError(.invalidInput, "\(path) is not a kiln public key") }
        return PublicSigningKey(key, comment: fields.dropFirst(2).joined(separator: " "))
    }
}

/// A detached signature, stored as JSON beside what it signs.
public struct SignatureEnvelope: Codable, Sendable, Equatable {
    /// What was signed: an image name or an export's file name; part of the signed message, so
    /// a signature cannot be moved to another subject with the same bytes.
    public var subject: String
    public var payloadDigest: String
    public var keyID: String
    public var publicKey: String
    public var signature: String
    public var algorithm = "ed25519"

    enum CodingKeys: String, CodingKey {
        case subject
        case payloadDigest = "payload_digest"
        case keyID = "key_id"
        case publicKey = "public_key"
        case signature, algorithm
    }

    static func message(subject: String, payload: Data) -> Data {
        Data("kiln-signature/v1\n\(subject)\nsha256:\(Hashing.sha256Hex(payload))\n".utf8)
    }

    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self) + Data("\n".utf8)
    }

    public static func load(_ path: String) throws -> SignatureEnvelope {
        guard let data = FileManager.default.contents(atPath: path) else { throw KilnError(.notFound, "no signature at \(path)") }
        do { return try JSONDecoder().decode(SignatureEnvelope.self, from: data) } catch {
            throw KilnError(.storeInconsistent, "\(path) is not a kiln signature", cause: error)
        }
    }

    /// nil when the signature holds for `payload` under one of `trusted`; else why not.
    public func problem(payload: Data, subject: String, trusted: [PublicSigningKey]) -> String? {
        guard self.subject == subject else { return "the signature is for \(self.subject), not \(subject)" }
        guard payloadDigest == "sha256:" + Hashing.sha256Hex(payload) else {
            return "the signed record changed since it was signed (\(payloadDigest.prefix(19))…)"
        }
        guard let key = trusted.first(where: { $0.id == keyID }) else {
            return "signed by key \(keyID), which is not trusted (add its .pub to $KILN_HOME/keys or pass --key)"
        }
        guard let signature = Data(base64Encoded: self.signature),
            key.key.isValidSignature(signature, for: Self.message(subject: subject, payload: payload))
        else { return "the signature does not match key \(keyID)" }
        return nil
    }
}

extension Store {
    public var keysDirectory: String { root + "/keys" }

    /// The key builds sign with: `KILN_SIGNING_KEY`, else `$KILN_HOME/keys/kiln.key` when it exists.
    public func defaultSigningKeyPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        if let path = environment["KILN_SIGNING_KEY"], !path.isEmpty { return path }
        let path = keysDirectory + "/kiln.key"
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }

    /// Every `*.pub` in `$KILN_HOME/keys`.
    public func trustedKeys() throws -> [PublicSigningKey] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: keysDirectory)) ?? []
        return try names.filter { $0.hasSuffix(".pub") }.sorted().map { try PublicSigningKey.load(keysDirectory + "/" + $0) }
    }

    /// Signs the stored provenance of `image` (recording it first if the image predates it).
    @discardableResult
    public func sign(_ image: ImageRecord, with key: SigningKey, provider: String?) throws -> SignatureEnvelope {
        let payload = try recordProvenance(of: image, provider: provider)
        let envelope = try key.sign(payload, subject: image.name)
        // The standard form first: a signature file always has its attestation beside it.
        try attest(image, record: payload, with: key)
        try envelope.encoded().write(to: URL(fileURLWithPath: signaturePath(of: image.name)), options: .atomic)
        try catalog.markSigned(image.name, keyID: envelope.keyID)
        return envelope
    }
}
