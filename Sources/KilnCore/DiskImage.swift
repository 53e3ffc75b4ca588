import Foundation

/// Every place kiln hands a disk to `qemu-img` goes through here, so none of them lets QEMU
/// guess: the format is always given (`-f`), and a disk kiln did not write is inspected before
/// anything reads its data.
///
/// Why this matters: a qcow2 names other files in its header (a backing file, an external data
/// file, even a `json:` block device description). `qemu-img convert` without a look at the
/// header would follow them and copy a host file (`/etc/shadow`) into the image, and the
/// template's sha256 would still match, because it covers only the attacker's header.
public enum DiskImage {
    /// What `qemu-img info --output=json` says of one disk, the fields kiln checks.
    public struct Info: Sendable, Equatable, Decodable {
        public var format: String
        public var virtualSize: UInt64
        public var backingFilename: String?
        public var dataFile: String?
        /// vmdk extents and the like: other files the disk's data lives in.
        public var extentFiles: [String]

        enum CodingKeys: String, CodingKey {
            case format
            case virtualSize = "virtual-size"
            case backingFilename = "backing-filename"
            case fullBackingFilename = "full-backing-filename"
            case formatSpecific = "format-specific"
        }

        struct FormatSpecific: Decodable {
            struct Data: Decodable {
                var dataFile: String?
                var extents: [Extent]?
                enum CodingKeys: String, CodingKey {
                    case dataFile = "data-file"
                    case extents
                }
            }
            struct Extent: Decodable { var filename: String? }
            var data: Data?
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            format = try c.decode(String.self, forKey: .format)
            virtualSize = try c.decode(UInt64.self, forKey: .virtualSize)
            backingFilename =
                try c.decodeIfPresent(String.self, forKey: .backingFilename)
                ?? c.decodeIfPresent(String.self, forKey: .fullBackingFilename)
            let specific = try c.decodeIfPresent(FormatSpecific.self, forKey: .formatSpecific)
            dataFile = specific?.data?.dataFile
            extentFiles = specific?.data?.extents?.compactMap(\.filename) ?? []
        }

        public init(format: String, virtualSize: UInt64, backingFilename: String? = nil, dataFile: String? = nil) {
            (self.format, self.virtualSize, self.backingFilename, self.dataFile) = (format, virtualSize, backingFilename, dataFile)
            extentFiles = []
        }
    }

    /// The formats kiln takes from outside: raw and qcow2. Others (vmdk, vhdx, vdi) can name
    /// extent files of their own; convert them with `qemu-img convert -O qcow2` first.
    public static let foreignFormats = ["raw", "qcow2"]

    /// A path qemu-img reads as a plain file: never as `json:…`, `nbd:…` or another protocol
    /// prefix, which it would honour in a relative name with a colon.
    public static func plainPath(_ path: String) -> String {
        path.hasPrefix("/") ? path : "./" + path
    }

    /// `qemu-img info` of `path`; `format` nil lets qemu-img probe it (only for foreign disks,
    /// which ``checkForeign(_:)`` then judges). `shared`: read a disk a running VM holds.
    public static func info(_ path: String, format: String? = nil, shared: Bool = false) async throws -> Info {
        var arguments = ["info", "--output=json"]
        if let format { arguments += ["-f", format] }
        if shared { arguments.append("-U") }
        let result = try await ProcessRunner.run("qemu-img", arguments + [plainPath(path)], timeout: .seconds(60))
        guard result.succeeded else {
            let reason = result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            throw KilnError(.io, "\(path): qemu-img cannot read it as a disk" + (reason.isEmpty ? "" : ": \(reason)"))
        }
        do {
            return try JSONDecoder().decode(Info.self, from: Data(result.stdout.utf8))
        } catch {
            throw KilnError(.io, "\(path): qemu-img info gave an answer kiln cannot read", cause: error)
        }
    }

    /// Inspects a disk kiln did not write and returns its format, or throws naming what is
    /// wrong: an unexpected format, a backing file, an external data file or extent files.
    public static func checkForeign(_ path: String) async throws -> Info {
        let info = try await info(path)
        let problems = problems(of: info)
        guard problems.isEmpty else {
            throw KilnError(.buildFailed, "\(path): refused as a source disk: " + problems.joined(separator: "; "))
        }
        return info
    }

    /// What makes a foreign disk unsafe to read: empty when it is one self-contained file.
    public static func problems(of info: Info) -> [String] {
        var problems: [String] = []
        if !foreignFormats.contains(info.format) {
            problems.append(
                "its format is \(info.format), kiln takes \(foreignFormats.joined(separator: " or ")) (convert it with qemu-img convert -O qcow2 first)"
            )
        }
        if let backing = info.backingFilename {
            problems.append(
                "it has a backing file (\(backing)): a source disk must hold all its data itself (qemu-img convert it into one file first)")
        }
        if let data = info.dataFile {
            problems.append("it keeps its data in an external file (\(data))")
        }
        let others = info.extentFiles.filter { !$0.isEmpty }
        if !others.isEmpty {
            problems.append("it names extent files (\(others.joined(separator: ", ")))")
        }
        return problems
    }

    /// `qemu-img convert` with both formats given. `options`: `-o` of the output format.
    public static func convert(
        _ source: String, format: String, to destination: String, outputFormat: String, options: String? = nil,
        onLine: (@Sendable (ProcessOutputLine) -> Void)? = nil, progress label: String? = nil
    ) async throws {
        var arguments = ["convert", "-f", format, "-O", outputFormat]
        if let options { arguments += ["-o", options] }
        // `-p` prints "(12.50/100%)" lines (ended by a carriage return, which the line reader
        // splits on); the meter turns them into bytes of the virtual disk.
        let meter: ProgressMeter? =
            if let label, ProgressMeter.style.withLock({ $0 }) != .none {
                ProgressMeter(label, total: Int64(try await info(source, format: format, shared: true).virtualSize))
            } else {
                nil
            }
        if meter != nil { arguments.append("-p") }
        defer { meter?.finish() }
        arguments += [plainPath(source), plainPath(destination)]
        let result = try await ProcessRunner.run("qemu-img", arguments) { line in
            if let meter, let percent = Self.progressPercent(line.text) {
                meter.set(done: Int64(percent / 100 * Double(meter.total ?? 0)))
            } else {
                onLine?(line)
            }
        }
        guard result.succeeded else {
            throw KilnError(
                .io, "qemu-img convert failed (\(result.status)): \(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }

    /// 12.5 from qemu-img's "    (12.50/100%)".
    static func progressPercent(_ line: String) -> Double? {
        let text = line.trimmingCharacters(in: .whitespaces)
        guard text.hasPrefix("("), text.hasSuffix("/100%)") else { return nil }
        return Double(text.dropFirst().dropLast("/100%)".count))
    }
}
