import CArchive
import Foundation
import KilnCore
import KilnModel
import KilnStore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The newest version of each package in one or more Packages indexes.
public struct PackageIndex: Sendable, Equatable {
    struct Key: Hashable, Sendable {
        let name: String
        let architecture: String
    }

    private(set) var entries: [Key: String] = [:]

    public init() {}

    /// Number of distinct (name, architecture) entries.
    public var count: Int { entries.count }

    /// Newest version of `name` for `architecture`, considering "all" packages too.
    public func newest(_ name: String, architecture: String) -> String? {
        let own = entries[Key(name: name, architecture: architecture)]
        let all = architecture == "all" ? nil : entries[Key(name: name, architecture: "all")]
        guard let own else { return all }
        guard let all else { return own }
        return DebianVersion.compare(all, own) > 0 ? all : own
    }

    /// Keeps the newer version per entry.
    public mutating func merge(_ other: PackageIndex) {
        if entries.isEmpty {
            entries = other.entries
            return
        }
        for (key, version) in other.entries { insert(key, version) }
    }

    mutating func insert(_ key: Key, _ version: String) {
        if let known = entries[key], DebianVersion.compare(version, known) <= 0 { return }
        entries[key] = version
    }

    /// Parses a Packages file (deb822 stanzas: Package, Version, Architecture; other fields
    /// and continuation lines ignored).
    public static func parse(_ data: Data) throws -> PackageIndex {
        try data.withUnsafeBytes { raw in try parse(raw.bindMemory(to: UInt8.self)) }
    }

    // Debian's main index is ~45 MB: lines are found with memchr over the raw bytes and only
    // the three wanted values ever become Strings.
    static func parse(_ bytes: UnsafeBufferPointer<UInt8>) throws -> PackageIndex {
        var index = PackageIndex()
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return index }
        // A Debian stanza averages ~700 bytes; reserving avoids rehashing 16 times on the way up.
        index.entries.reserveCapacity(bytes.count / 600)
        let end = bytes.count
        var position = 0
        var lineNumber = 0
        var stanzaLine = 0
        var package: Range<Int>?
        var version: Range<Int>?
        var architecture: Range<Int>?

        func string(_ range: Range<Int>) -> String {
            String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self)
        }
        func finishStanza() throws {
            defer { (package, version, architecture) = (nil, nil, nil) }
            guard package != nil || version != nil || architecture != nil else { return }
            guard let package, let version, let architecture else {
                let missing = [("Package", package), ("Version", version), ("Architecture", architecture)]
                    .filter { $0.1 == nil }.map(\.0).joined(separator: ", ")
                throw KilnError(.io, "Packages index line \(stanzaLine): stanza has no \(missing)")
            }
            index.insert(Key(name: string(package), architecture: string(architecture)), string(version))
        }
        func fieldIs(_ start: Int, _ length: Int, _ lowercase: StaticString) -> Bool {
            guard length == lowercase.utf8CodeUnitCount else { return false }
            let wanted = lowercase.utf8Start
            for offset in 0..<length where base[start + offset] | 0x20 != wanted[offset] { return false }
            return true
        }

        while position < end {
            let newline = memchr(base + position, 0x0A, end - position)
            let lineEnd = newline.map { UnsafeRawPointer(base).distance(to: UnsafeRawPointer($0)) } ?? end
            var contentEnd = lineEnd
            if contentEnd > position && base[contentEnd - 1] == 0x0D { contentEnd -= 1 }
            lineNumber += 1
            defer { position = lineEnd + 1 }
            if position == contentEnd {
                try finishStanza()
                continue
            }
            let first = base[position]
            if first == 0x20 || first == 0x09 {
                // deb822 lets a line of only blanks separate stanzas; any other is a continuation.
                if !(position..<contentEnd).contains(where: { base[$0] != 0x20 && base[$0] != 0x09 }) {
                    try finishStanza()
                }
                continue
            }
            if first == UInt8(ascii: "#") { continue }
            if package == nil && version == nil && architecture == nil { stanzaLine = lineNumber }
            guard let colonPointer = memchr(base + position, Int32(UInt8(ascii: ":")), contentEnd - position) else {
                throw KilnError(.io, "Packages index line \(lineNumber): expected 'Field: value', found '\(string(position..<contentEnd))'")
            }
            let colon = UnsafeRawPointer(base).distance(to: UnsafeRawPointer(colonPointer))
            let nameLength = colon - position
            guard nameLength == 7 || nameLength == 12 else { continue }
            var valueStart = colon + 1
            var valueEnd = contentEnd
            while valueStart < valueEnd && (base[valueStart] == 0x20 || base[valueStart] == 0x09) { valueStart += 1 }
            while valueEnd > valueStart && (base[valueEnd - 1] == 0x20 || base[valueEnd - 1] == 0x09) { valueEnd -= 1 }
            let value = valueStart..<valueEnd
            let field: StaticString
            if fieldIs(position, nameLength, "package") {
                field = "Package"
                package = value
            } else if fieldIs(position, nameLength, "version") {
                field = "Version"
                version = value
            } else if fieldIs(position, nameLength, "architecture") {
                field = "Architecture"
                architecture = value
            } else {
                continue
            }
            // dpkg allows no blanks in these values; refusing them keeps the cache's TSV unambiguous.
            if value.isEmpty || value.contains(where: { base[$0] == 0x20 || base[$0] == 0x09 }) {
                throw KilnError(.io, "Packages index line \(lineNumber): invalid \(field) '\(string(value))'")
            }
        }
        try finishStanza()
        return index
    }

    private static let cacheHeader = "kiln-apt-index 1"

    /// `name\tarch\tversion` lines after a header that carries the entry count, so a truncated
    /// file is never taken for a complete index.
    func cacheData() -> Data {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(entries.count * 40 + 64)
        bytes.append(contentsOf: "\(Self.cacheHeader) \(entries.count)\n".utf8)
        for (key, version) in entries {
            bytes.append(contentsOf: key.name.utf8)
            bytes.append(0x09)
            bytes.append(contentsOf: key.architecture.utf8)
            bytes.append(0x09)
            bytes.append(contentsOf: version.utf8)
            bytes.append(0x0A)
        }
        return Data(bytes)
    }

    /// The index `cacheData` wrote, or nil for anything else.
    static func fromCache(_ data: Data) -> PackageIndex? {
        data.withUnsafeBytes { raw -> PackageIndex? in
            let bytes = raw.bindMemory(to: UInt8.self)
            guard let base = bytes.baseAddress,
                let headerEnd = bytes.firstIndex(of: 0x0A)
            else { return nil }
            let header = String(decoding: UnsafeBufferPointer(rebasing: bytes[0..<headerEnd]), as: UTF8.self)
            guard header.hasPrefix(cacheHeader + " "), let expected = Int(header.dropFirst(cacheHeader.count + 1)) else {
                return nil
            }
            var index = PackageIndex()
            index.entries.reserveCapacity(expected)
            var position = headerEnd + 1
            let end = bytes.count
            func string(_ range: Range<Int>) -> String {
                String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self)
            }
            while position < end {
                guard let newline = memchr(base + position, 0x0A, end - position) else { return nil }
                let lineEnd = UnsafeRawPointer(base).distance(to: UnsafeRawPointer(newline))
                guard let firstTab = bytes[position..<lineEnd].firstIndex(of: 0x09),
                    let secondTab = bytes[(firstTab + 1)..<lineEnd].firstIndex(of: 0x09)
                else { return nil }
                let key = Key(name: string(position..<firstTab), architecture: string((firstTab + 1)..<secondTab))
                index.entries[key] = string((secondTab + 1)..<lineEnd)
                position = lineEnd + 1
            }
            return index.entries.count == expected ? index : nil
        }
    }
}
