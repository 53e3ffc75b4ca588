import ArgumentParser
import Foundation
import KilnCore
import KilnExport
import KilnModel
import KilnRegistry
import KilnRemote
import KilnStore

struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write an image out of the store as a standalone artifact, or push it to an OCI registry.",
        discussion: """
            Formats:
              qcow2, raw, vmdk  one flattened, bootable disk, no backing chain (vmdk:
                                stream-optimized, as VMware and vSphere import it)
              vhd               a fixed VHD of whole MiB, as Azure imports it
              gce               disk.raw in a tar.gz, for GCE's image import
              tar.zst           the root filesystem as a tar, read without booting
              oci               an OCI image layout, one layer per kiln layer

            Beside the artifact kiln writes NAME.provenance.json, NAME.spdx.json (the SBOM), \
            NAME.sig when a signing key exists ($KILN_HOME/keys/kiln.key or $KILN_SIGNING_KEY), and \
            an entry in kiln-manifest.json. A registry's credentials come from \
            $KILN_REGISTRY_USER and $KILN_REGISTRY_PASSWORD.

              kiln export shop-web --format qcow2
              kiln export shop-web --format gce --output shop-web.tar.gz
              kiln export shop-web --format tar.zst --output /srv/rootfs.tar.zst
              kiln export shop-web --format oci --push localhost:5000/shop/web:1.0
            """)

    @Argument(
        help: ArgumentHelp("An image name, FAMILY@CHANNEL, or a family (its newest READY image).", valueName: "name"),
        completion: Completions.imageNames)
    var name: String

    @Option(
        help: ArgumentHelp("qcow2, raw, vmdk, vhd, gce, tar.zst or oci.", valueName: "format"),
        completion: .list(ExportFormat.allCases.map(\.rawValue)))
    var format: String

    @Option(
        help: ArgumentHelp("Where to write the artifact (default: ./IMAGE-NAME.FORMAT; an OCI layout is a directory).", valueName: "path"),
        completion: .file())
    var output: String?

    @Option(help: ArgumentHelp("Push the OCI image to HOST[:PORT]/REPOSITORY:TAG (with --format oci).", valueName: "reference"))
    var push: String?

    @Flag(help: "Speak plain HTTP to the registry whatever its host (localhost and 127.0.0.1 always are).")
    var insecure = false

    @Flag(help: "Replace an existing artifact at the output path.")
    var force = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    @OptionGroup var store: StoreOptions

    func run() async throws {
        guard let format = ExportFormat(rawValue: format) else {
            throw KilnError(
                .invalidInput, "unknown format '\(format)' (formats: \(ExportFormat.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        if push != nil, format != .oci { throw KilnError(.invalidInput, "--push needs --format oci") }
        let reference = try push.map { try RegistryReference(parsing: $0, insecure: insecure) }
        let store = try store.openRecovered()
        let image = try store.catalog.resolve(name)
        // An export is a deployment's copy: an image whose tests have not passed is not handed out.
        if image.state == .testing || image.state == .failed {
            throw KilnError(.invalidInput, try untestedMessage(image, catalog: store.catalog))
        }
        // With a remote, this store may hold none of the image's chain yet: fetch what it lacks.
        if let remote = try self.store.remote(for: store) {
            let pulled = try await remote.pull(chainOf: image)
            if !pulled.pulled.isEmpty && !json {
                printError("kiln: export: pulled \(pulled.pulled.count) blob(s) of \(image.name)'s chain from \(remote.location)")
            }
        }
        let key = try store.defaultSigningKeyPath().map(SigningKey.load)
        // A push without --output keeps no layout: it is written to scratch space and removed.
        let keepLayout = push == nil || output != nil
        let path = output ?? (keepLayout ? image.name + format.suffix : store.root + "/builds/export-\(getpid())-push.oci")
        if FileManager.default.fileExists(atPath: path) || (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) != nil {
            guard keepLayout else { throw KilnError(.internalError, "\(path): kiln's own scratch layout exists") }
            guard force else { throw KilnError(.invalidInput, "\(path) exists (--force replaces it)") }
            try Exporter.removePreviousExport(at: path, format: format)
        }
        let quiet = json
        let exporter = Exporter(store: store) { line in if !quiet { printError("kiln: export: \(line)") } }
        let client = try reference.map { try RegistryClient.fromEnvironment(reference: $0) }
        // A push that keeps no layout need not make the layers the registry already has.
        var remoteHas: (@Sendable (String) async throws -> Bool)?
        if let client, !keepLayout {
            remoteHas = { digest in try await client.blobExists(digest) }
        }
        let started = Date()
        var result = try await exporter.export(image, format: format, to: path, tag: reference?.tag, remoteHas: remoteHas)
        defer { if !keepLayout { try? Store.removeTree(path) } }
        var report = ExportReport(result: result, seconds: Date().timeIntervalSince(started))
        if let reference {
            report.push = try await Registry.push(layout: OCILayout(path: path), tag: result.tag, to: reference, client: client) {
                line in
                if !quiet { printError("kiln: push: \(line)") }
            }
            report.seconds = Date().timeIntervalSince(started)
        }
        if keepLayout {
            report.sidecars = try ExportSidecars.write(result, image: image, store: store, key: key)
        } else {
            result.path = reference?.description ?? path
        }
        if json {
            try printJSON(report)
            return
        }
        if keepLayout {
            print("exported \(image.name) as \(format.rawValue): \(path) (\(result.digest))")
            for file in report.sidecars ?? [] { print("  \(file)") }
        }
        if let pushed = report.push {
            print(
                "pushed \(image.name) to \(pushed.reference) (\(pushed.manifestDigest)): \(pushed.uploaded.count) blob(s) uploaded, \(pushed.existing.count) already there"
            )
        }
    }
}

struct ExportReport: Encodable {
    var result: ExportResult
    var seconds: Double
    var sidecars: [String]?
    var push: PushReport?
}
