import CArchive
import Foundation
import KilnCore
import KilnModel
import KilnStore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

public struct FetchedSuite: Sendable {
    public let source: AptSource
    /// SHA-256 (hex) of the Release/InRelease bytes as fetched: "the mirror's state" for build keys.
    public let releaseHash: String
    public let index: PackageIndex
}

/// Reads a suite's package versions the way apt does, without apt: the signed Release file,
/// then each component's Packages index, checked against the hashes Release lists.
public struct AptIndexFetcher: Sendable {
    public let cacheDirectory: String?

    /// cacheDirectory: parsed indexes cached by the SHA-256 of the Packages file named in
    /// Release, so a second check with an unchanged repository downloads only the Release file.
    /// nil: no cache.
    public init(cacheDirectory: String?) {
        self.cacheDirectory = cacheDirectory
    }

    /// Removes cached indexes unused for `age` (a mirror publishes a new index every few days;
    /// the old ones would pile up). Only a cache: what cannot be removed stays.
    public func pruneCache(olderThan age: TimeInterval = 14 * 86_400, now: Date = Date()) {
        guard let cacheDirectory, let names = try? FileManager.default.contentsOfDirectory(atPath: cacheDirectory) else { return }
        for name in names where name.hasSuffix(".tsv") {
            let path = cacheDirectory + "/" + name
            if let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date,
                now.timeIntervalSince(modified) > age
            {
                try? FileManager.default.removeItem(atPath: path)
            }
        }
    }

    /// Fetches and verifies the suite's Release file and the Packages index of each component
    /// for `architecture` (plus binary-all where the repository keeps "all" packages apart).
    public func fetch(_ source: AptSource, architecture: String) async throws -> FetchedSuite {
        let release = try await Self.release(of: source)
        var index = PackageIndex()
        for component in source.components {
            let wanted = "\(component)/binary-\(architecture)/Packages"
            guard let file = release.index(wanted) else {
                var known: [String] = []
                if let architectures = release.fields["architectures"] { known.append("Architectures: \(architectures)") }
                if let components = release.fields["components"] { known.append("Components: \(components)") }
                throw KilnError(
                    .io,
                    "Release of \(source.suite) lists no \(wanted)" + (known.isEmpty ? "" : " (\(known.joined(separator: "; ")))"))
            }
            index.merge(try await packages(file, of: source, release: release))
            // Without this field, apt reads "all" packages from binary-all alone when Release
            // lists that architecture; Debian itself repeats them in every binary-ARCH index.
            if release.fields["no-support-for-architecture-all"] != "Packages",
                release.fields["architectures"]?.split(separator: " ").contains("all") == true,
                let all = release.index("\(component)/binary-all/Packages")
            {
                index.merge(try await packages(all, of: source, release: release))
            }
        }
        return FetchedSuite(source: source, releaseHash: release.hash, index: index)
    }

    /// Only the Release file's hash (signature verified as in `fetch`): what a build key records.
    public func releaseHash(_ source: AptSource) async throws -> String {
        try await Self.release(of: source).hash
    }

    // MARK: Packages

    private func packages(_ file: Release.File, of source: AptSource, release: Release) async throws -> PackageIndex {
        let cacheFile = cacheDirectory.map { "\($0)/\(file.sha256).tsv" }
        if let cacheFile, let data = FileManager.default.contents(atPath: cacheFile),
            let cached = PackageIndex.fromCache(data)
        {
            // Its modification time says when it was last used: pruneCache keeps what is in use.
            utimes(cacheFile, nil)
            return cached
        }
        let directory = source.base + "/dists/\(source.suite)/"
        var location = directory + file.path
        var fetched: Data?
        // By-hash names never change meaning, so a mirror updating between our Release and
        // Packages requests cannot hand us an index that does not match the Release we have.
        if release.fields["acquire-by-hash"]?.lowercased() == "yes" {
            let folder = (file.path as NSString).deletingLastPathComponent
            let byHash = directory + folder + "/by-hash/SHA256/" + file.sha256
            if case .data(let data) = try await Self.request(byHash) { (fetched, location) = (data, byHash) }
        }
        let raw: Data
        if let fetched {
            raw = fetched
        } else {
            raw = try await Self.require(location)
        }
        let hash = Hashing.sha256Hex(raw)
        guard hash == file.sha256 else {
            let sizes = raw.count == file.size ? "" : " (\(raw.count) bytes, Release says \(file.size))"
            throw KilnError(.io, "\(location): SHA-256 is \(hash), Release says \(file.sha256)\(sizes)")
        }
        guard raw.count == file.size else {
            throw KilnError(.io, "\(location): size is \(raw.count) bytes, Release says \(file.size)")
        }
        let text = file.path.hasSuffix("/Packages") ? raw : try Self.decompress(raw, from: location)
        let index: PackageIndex
        do {
            index = try PackageIndex.parse(text)
        } catch let error as KilnError {
            throw KilnError(.io, "\(location): \(error.message)")
        }
        if let cacheDirectory, let cacheFile {
            // Only a cache: a check that cannot save it is still a good check.
            try? Self.writeAtomically(index.cacheData(), to: cacheFile, directory: cacheDirectory)
        }
        return index
    }

    private static func writeAtomically(_ data: Data, to path: String, directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let temporary = "\(directory)/.\(UUID().uuidString).tmp"
        do {
            try data.write(to: URL(fileURLWithPath: temporary))
            try Store.fsync(path: temporary)
            guard rename(temporary, path) == 0 else { throw KilnError(.io, "cannot rename \(temporary) to \(path)") }
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
    }

    /// Decompresses whatever filter libarchive recognises (xz, gzip, bzip2, zstd).
    static func decompress(_ data: Data, from location: String) throws -> Data {
        guard let archive = archive_read_new() else { throw KilnError(.io, "libarchive: out of memory") }
        defer { archive_read_free(archive) }
        archive_read_support_filter_all(archive)
        archive_read_support_format_raw(archive)
        archive_read_support_format_empty(archive)
        func failure() -> KilnError {
            let reason = archive_error_string(archive).map { String(cString: $0) } ?? "unknown error"
            return KilnError(.io, "cannot decompress \(location): \(reason)")
        }
        return try data.withUnsafeBytes { raw in
            guard archive_read_open_memory(archive, raw.baseAddress, raw.count) == ARCHIVE_OK else { throw failure() }
            var entry: OpaquePointer?
            let header = archive_read_next_header(archive, &entry)
            if header == ARCHIVE_EOF { return Data() }
            guard header == ARCHIVE_OK || header == ARCHIVE_WARN else { throw failure() }
            var out = Data(capacity: min(data.count * 6, 256 << 20))
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let n = buffer.withUnsafeMutableBytes { archive_read_data(archive, $0.baseAddress, $0.count) }
                if n == 0 { break }
                guard n > 0 else { throw failure() }
                out.append(buffer, count: n)
            }
            return out
        }
    }

}
