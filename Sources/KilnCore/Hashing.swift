import Crypto
import Foundation

public enum Hashing {
    public static func sha256Hex(_ data: some DataProtocol) -> String {
        SHA256.hash(data: data).hex
    }

    public static func sha256Hex(_ string: String) -> String {
        sha256Hex(Data(string.utf8))
    }

    /// Streams the file through SHA-256 in 1 MiB reads so multi-GB disks never sit in memory.
    public static func sha256Hex(fileAt path: String) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw KilnError(.io, "cannot open \(path) for hashing")
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        while true {
            let chunk = try handle.read(upToCount: 1 << 20) ?? Data()
            if chunk.isEmpty { break }
            hasher.update(data: chunk)
        }
        return hasher.finalize().hex
    }
}

extension Digest {
    public var hex: String { map { String(format: "%02x", $0) }.joined() }
}
