import ArgumentParser
import KilnBuild
import KilnCore
import KilnExport
import KilnModel
import KilnRemote
import KilnStore

struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-hash image blobs and check the catalog against the store.",
        discussion: """
            With NAME, checks that image and every blob its disk stands on; without, every image \
            whose disk the catalog says exists, every cached source disk, and what the store holds \
            that no catalog row names. A blob must exist, hash to its name, be read-only and be \
            backed by the blob the catalog names; an image's parent must be in the catalog and be \
            that blob. Exits 1 when anything is wrong.

              kiln verify                       the whole store
              kiln verify web-v20261123-2       one image and what it stands on
            """)

    @Argument(help: ArgumentHelp("An exact image name; default: the whole store.", valueName: "name"), completion: Completions.imageNames)
    var name: String?

    @OptionGroup var store: StoreOptions

    @Flag(help: "Print JSON: {results: [{subject, digest, problems, signed_by}], notes}.")
    var json = false

    @Option(help: ArgumentHelp("Also trust this public key (default: every *.pub in $KILN_HOME/keys).", valueName: "path"))
    var key: [String] = []

    @Flag(help: "An image without a valid signature is a problem.")
    var requireSignature = false

    @Option(help: ArgumentHelp("Check an exported artifact and its .sig, .provenance.json instead of the store.", valueName: "path"))
    var artifact: String?

    func run() async throws {
        let store = try store.openRecovered()
        let trusted = try store.trustedKeys() + key.map(PublicSigningKey.load)
        if let artifact {
            try await verifyArtifact(artifact, trusted: trusted)
            return
        }
        // With a remote, this store is a cache: a blob it does not hold is checked there.
        var remoteCheck: (@Sendable (ImageRecord?, String) async -> [String])?
        if let remote = try self.store.remote(for: store) {
            remoteCheck = { image, digest in await remote.problems(of: image, digest: digest) }
        }
        let report = try await Verifier.run(
            store, name: name, trusted: trusted, requireSignature: requireSignature, remote: remoteCheck)
        if json {
            try printJSON(report)
        } else {
            for result in report.results {
                if result.problems.isEmpty {
                    let signed = result.signedBy.map { "  signed by \($0)" } ?? ""
                    print("ok      \(result.subject)  sha256:\(result.digest.prefix(12))\(signed)")
                } else {
                    for problem in result.problems { print("FAILED  \(result.subject): \(problem)") }
                }
            }
            for note in report.notes { print("note    \(note)") }
            let count = report.problemCount
            print("verified \(report.results.count) blob(s): \(count == 0 ? "no problems" : "\(count) problem(s)")")
        }
        if report.problemCount > 0 {
            throw KilnError(.storeInconsistent, "the store has \(report.problemCount) problem(s); see above")
        }
    }

    private func verifyArtifact(_ path: String, trusted: [PublicSigningKey]) async throws {
        let (problems, signedBy) = try ExportSidecars.verify(path, trusted: trusted)
        if json {
            try printJSON(ArtifactReport(artifact: path, problems: problems, signedBy: signedBy))
        } else if problems.isEmpty {
            print("ok      \(path)  signed by \(signedBy ?? "?")")
        } else {
            for problem in problems { print("FAILED  \(path): \(problem)") }
        }
        if !problems.isEmpty { throw KilnError(.storeInconsistent, "\(path) failed verification; see above") }
    }
}

struct ArtifactReport: Encodable {
    var artifact: String
    var problems: [String]
    var signedBy: String?

    enum CodingKeys: String, CodingKey {
        case artifact, problems
        case signedBy = "signed_by"
    }
}
