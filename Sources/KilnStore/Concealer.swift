import Crypto
import Foundation
import KilnCore

/// How a sensitive value enters the build key and the stored key inputs: an HMAC-SHA256 under a
/// random key kept in the catalog, not a plain SHA-256. A plain hash of a short secret can be
/// guessed offline by anyone who reads the inputs (the catalog, `kiln inspect --json`, the
/// provenance); the keyed one cannot without the catalog's key. One key per catalog, so every
/// machine sharing a catalog computes the same build keys.
public struct Concealer: Sendable {
    let key: SymmetricKey

    public init(key: Data) { self.key = SymmetricKey(data: key) }

    public func callAsFunction(_ value: String) -> String {
        let code = HMAC<SHA256>.authenticationCode(for: Data(value.utf8), using: key)
        return "hmac-sha256:" + code.map { String(format: "%02x", $0) }.joined()
    }
}

extension Catalog {
    static let concealKeySetting = "build-key-hmac"

    /// The catalog's concealing key, made on first use.
    public func concealer() throws -> Concealer {
        let stored = try db.write { db -> String in
            if let existing = try db.row("SELECT value FROM setting WHERE name = ?", [.text(Self.concealKeySetting)])?
                .string("value")
            {
                return existing
            }
            let made = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }.base64EncodedString()
            try db.execute("INSERT INTO setting (name, value) VALUES (?, ?)", [.text(Self.concealKeySetting), .text(made)])
            return made
        }
        guard let key = Data(base64Encoded: stored), key.count == 32 else {
            throw KilnError(.storeInconsistent, "the catalog's build-key HMAC key is damaged")
        }
        return Concealer(key: key)
    }
}
