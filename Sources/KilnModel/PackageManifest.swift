import Foundation

/// One package installed in an image, as the guest's package database lists it.
public struct InstalledPackage: Sendable, Equatable, Codable {
    public var name: String
    public var version: String
    public var architecture: String
    /// The source package it was built from, and that source's version.
    public var source: String
    public var sourceVersion: String

    /// snake_case, as kiln's other JSON (docs/json.md).
    enum CodingKeys: String, CodingKey {
        case name, version, architecture, source
        case sourceVersion = "source_version"
    }

    public init(name: String, version: String, architecture: String, source: String, sourceVersion: String) {
        (self.name, self.version, self.architecture, self.source) = (name, version, architecture, source)
        self.sourceVersion = sourceVersion
    }
}

/// What an image has installed, recorded at the end of its build: `kiln refresh` compares it
/// with the repositories' indexes, and it is the image's software bill of materials.
///
/// Stored as tab-separated lines (name, version, architecture, source, source version): a few
/// hundred packages take a few KiB, and the form is the one `dpkg-query` prints.
public struct PackageManifest: Sendable, Equatable {
    public var packages: [InstalledPackage]

    public init(_ packages: [InstalledPackage]) {
        self.packages = packages.sorted { ($0.name, $0.architecture) < ($1.name, $1.architecture) }
    }

    /// Reads the stored form; lines that do not have five fields are skipped.
    public init(tsv: String) {
        var packages: [InstalledPackage] = []
        for line in tsv.split(separator: "\n") {
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard f.count == 5 else { continue }
            packages.append(InstalledPackage(name: f[0], version: f[1], architecture: f[2], source: f[3], sourceVersion: f[4]))
        }
        self.init(packages)
    }

    /// The guest's answer to ``query``: installed packages only (not removed ones whose
    /// configuration files remain). A source field dpkg leaves empty means "same as the package".
    public init(dpkgQueryOutput text: String) {
        var packages: [InstalledPackage] = []
        for line in text.split(separator: "\n") {
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard f.count == 6, f[0] == "installed" else { continue }
            packages.append(
                InstalledPackage(
                    name: f[1], version: f[2], architecture: f[3], source: f[4].isEmpty ? f[1] : f[4],
                    sourceVersion: f[5].isEmpty ? f[2] : f[5]))
        }
        self.init(packages)
    }

    public var tsv: String {
        packages.map { [$0.name, $0.version, $0.architecture, $0.source, $0.sourceVersion].joined(separator: "\t") + "\n" }.joined()
    }

    /// Run in the guest at the end of a build; prints nothing where there is no dpkg.
    public static let query = """
        command -v dpkg-query >/dev/null 2>&1 || exit 0
        dpkg-query -W -f '${db:Status-Status}\\t${Package}\\t${Version}\\t${Architecture}\\t${source:Package}\\t${source:Version}\\n'
        """
}
