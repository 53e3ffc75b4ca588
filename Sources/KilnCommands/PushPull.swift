import ArgumentParser
import Foundation
import KilnCore
import KilnModel
import KilnRemote
import KilnStore

/// What `kiln push` and `kiln pull` take: an image, the store, and a remote that must be set.
struct RemoteImageArguments: ParsableArguments {
    @Argument(help: ArgumentHelp("An image name, family, or family@channel.", valueName: "name"), completion: Completions.imageNames)
    var name: String

    @OptionGroup var store: StoreOptions

    @Flag(help: "Print what was moved as JSON (docs/json.md).")
    var json = false

    func open() throws -> (Store, Remote, ImageRecord) {
        let opened = try store.openRecovered()
        guard let remote = try store.remote(for: opened) else {
            throw KilnError(
                .invalidInput, "no remote is set: give --remote oci://HOST[:PORT]/REPOSITORY or set KILN_REMOTE (docs/remote.md)")
        }
        return (opened, remote, try opened.catalog.resolve(name))
    }
}

struct Push: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Put an image's blobs, name and build record in the remote.",
        discussion: """
            A build with a remote pushes by itself; this is for an image built without one, or \
            one whose tag or build record did not get there. Each blob of the image's chain the \
            remote lacks is uploaded (tag kiln-blob-DIGEST), then the image's own manifest is \
            tagged with its name, and its provenance, signature and log hang off it as a \
            referrer. The image is verified first: kiln pushes no bytes it would not build on. \
            Credentials: KILN_REGISTRY_USER and KILN_REGISTRY_PASSWORD (docs/remote.md).

              kiln push web-v20261123-2 --remote oci://registry.example:5000/team/kiln
            """)

    @OptionGroup var arguments: RemoteImageArguments

    func run() async throws {
        let (store, remote, image) = try arguments.open()
        try await Verifier.trust(store, image)
        let report = try await remote.push(image)
        if arguments.json {
            try printJSON(
                RemoteReport(image: image.name, remote: remote.location.description, push: report, pull: nil))
        } else {
            print(
                "pushed \(image.name) to \(remote.location): \(report.uploaded.count) blob(s) uploaded, \(report.present.count) there already"
                    + (report.manifest.map { ", manifest \($0)" } ?? "") + (report.record ? ", with its build record" : ""))
        }
    }
}

struct Pull: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fetch an image's chain of blobs from the remote into this store.",
        discussion: """
            A build pulls its parent's chain by itself; this is for using an image here by hand \
            (kiln export, kiln inspect, kiln test). Blobs this store has are not fetched again; \
            the others come by the digests the catalog records, several at once, each checked \
            before it is kept, and an interrupted pull resumes where it stopped. The image's \
            provenance, signature and build log come with it, and the image is verified at the end.

              kiln pull shop-web@prod
            """)

    @OptionGroup var arguments: RemoteImageArguments

    func run() async throws {
        let (store, remote, image) = try arguments.open()
        let report = try await remote.pull(chainOf: image, logs: true)
        try await Verifier.trust(store, image)
        if arguments.json {
            try printJSON(RemoteReport(image: image.name, remote: remote.location.description, push: nil, pull: report))
        } else {
            print(
                "pulled \(image.name) from \(remote.location): \(report.pulled.count) blob(s) fetched, \(report.cached.count) here already")
        }
    }
}

struct RemoteReport: Encodable {
    var image: String
    var remote: String
    var push: Remote.PushReport?
    var pull: Remote.PullReport?

    func encode(to encoder: any Encoder) throws {
        enum Keys: String, CodingKey { case image, remote, uploaded, present, manifest, record, pulled, cached, records }
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(image, forKey: .image)
        try container.encode(remote, forKey: .remote)
        if let push {
            try container.encode(push.uploaded, forKey: .uploaded)
            try container.encode(push.present, forKey: .present)
            try container.encodeIfPresent(push.manifest, forKey: .manifest)
            try container.encode(push.record, forKey: .record)
        }
        if let pull {
            try container.encode(pull.pulled, forKey: .pulled)
            try container.encode(pull.cached, forKey: .cached)
            try container.encode(pull.records, forKey: .records)
        }
    }
}
