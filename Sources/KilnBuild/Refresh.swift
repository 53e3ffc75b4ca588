import Foundation
import KilnCore
import KilnGraph
import KilnModel
import KilnStore
import KilnTemplates

/// A package whose repositories hold a newer version than the image has.
public struct PackageUpdate: Sendable, Equatable, Codable {
    public var name: String
    public var architecture: String
    public var installed: String
    public var available: String
}

/// What `kiln refresh` found for one image of the graph, and so whether its base is rebuilt.
public struct RefreshFinding: Sendable {
    public enum Status: Sendable {
        /// Every installed package is at the repositories' newest version.
        case current(checked: Int)
        case updates([PackageUpdate])
        /// The family has no READY image yet: a refresh builds it.
        case notBuilt
        /// Not checkable (a disk-image source, an image without a package manifest).
        case unchecked(String)
    }

    public var family: String
    /// The family's newest READY image, when it has one.
    public var image: String?
    /// The debootstrap base of the graph this image is built on; a refresh rebuilds from there.
    public var base: String?
    public var status: Status

    /// Whether this finding makes its base (and every image on it) be rebuilt.
    public var wantsRebuild: Bool {
        switch status {
        case .updates, .notBuilt: return base != nil
        case .current, .unchecked: return false
        }
    }
}

public struct RefreshReport: Sendable {
    /// One per template of the graph, parents first.
    public var findings: [RefreshFinding]
    /// The repositories read, `SUITE (N packages)`, for the log.
    public var suites: [String]

    /// The bases to rebuild from their repositories' current state.
    public var outdatedBases: Set<String> { Set(findings.filter(\.wantsRebuild).compactMap(\.base)) }
}

/// Compares what a graph's images have installed (their package manifests) with what their
/// base's repositories hold now, reading only the repositories' indexes: no VM boots.
public struct RefreshChecker: Sendable {
    let store: Store
    let fetcher: AptIndexFetcher
    /// The architecture of the guests kiln builds (the QEMU provider boots x86-64 only).
    static let architecture = "amd64"

    public init(store: Store) {
        self.store = store
        self.fetcher = AptIndexFetcher(cacheDirectory: store.root + "/cache/apt-indexes")
    }

    public func check(_ graph: ImageGraph) async throws -> RefreshReport {
        // Each image is checked against the repositories of the debootstrap base it stands on.
        var baseOf: [String: String] = [:]
        var unchecked: [String: String] = [:]
        for template in graph.order {
            switch template.source {
            case .debootstrap: baseOf[template.family] = template.family
            case .image(let parent):
                if let base = baseOf[parent] {
                    baseOf[template.family] = base
                } else {
                    unchecked[template.family] =
                        unchecked[parent] ?? "built on \(parent), which this directory does not build: refresh the directory that does"
                }
            case .file, .url, .providerImage:
                unchecked[template.family] = "built from a disk image (\(template.source.kind)): its packages are not checked"
            }
        }
        // Every repository is read once, however many bases name it.
        var indexes: [AptSource: FetchedSuite] = [:]
        var suites: [String] = []
        var merged: [String: PackageIndex] = [:]
        for template in graph.order where baseOf[template.family] == template.family {
            guard case .debootstrap(let spec) = template.source else { continue }
            var index = PackageIndex()
            for source in try SourceDisk.aptSources(of: spec, at: template.sourceLocation) {
                if indexes[source] == nil {
                    let fetched = try await fetcher.fetch(source, architecture: Self.architecture)
                    indexes[source] = fetched
                    suites.append("\(source.suite) (\(fetched.index.count) packages, \(source.mirror))")
                }
                index.merge(indexes[source]!.index)
            }
            merged[template.family] = index
        }
        fetcher.pruneCache()
        var findings: [RefreshFinding] = []
        for template in graph.order {
            let family = template.family
            let head = try store.catalog.head(of: family)
            var finding = RefreshFinding(family: family, image: head?.name, base: baseOf[family], status: .notBuilt)
            if let reason = unchecked[family] {
                finding.status = .unchecked(reason)
            } else if let head, let base = baseOf[family], let index = merged[base] {
                if let manifest = try store.catalog.packages(of: head.name) {
                    let updates = Self.updates(of: manifest, in: index)
                    finding.status = updates.isEmpty ? .current(checked: manifest.packages.count) : .updates(updates)
                } else {
                    finding.status = .unchecked(
                        "\(head.name) has no package manifest (built before kiln recorded manifests): its next build records one")
                }
            }
            findings.append(finding)
        }
        return RefreshReport(findings: findings, suites: suites)
    }

    /// The installed packages for which `index` holds a newer version. A package the
    /// repositories do not hold (installed from elsewhere) has nothing to compare with.
    static func updates(of manifest: PackageManifest, in index: PackageIndex) -> [PackageUpdate] {
        manifest.packages.compactMap { package in
            guard let newest = index.newest(package.name, architecture: package.architecture),
                DebianVersion.compare(newest, package.version) > 0
            else { return nil }
            return PackageUpdate(
                name: package.name, architecture: package.architecture, installed: package.version, available: newest)
        }
    }
}
