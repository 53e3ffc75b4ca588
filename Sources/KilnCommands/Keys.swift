import ArgumentParser
import Foundation
import KilnCore
import KilnModel
import KilnStore

struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage the ed25519 keys that sign images and exports.",
        discussion: """
            kiln signs with $KILN_SIGNING_KEY, else $KILN_HOME/keys/kiln.key when it exists: every \
            image a build commits, and every export. kiln verify trusts every *.pub in \
            $KILN_HOME/keys (and --key). Copy kiln.pub to the machines that verify; keep kiln.key \
            secret (a CI job gets it as a file variable).

              kiln keys generate               $KILN_HOME/keys/kiln.key and kiln.pub
              kiln keys generate --output ci   ci.key and ci.pub in the current directory
              kiln keys list
            """,
        subcommands: [Generate.self, List.self])

    struct Generate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a new signing key pair.")

        @Option(help: ArgumentHelp("Write OUTPUT.key and OUTPUT.pub (default: $KILN_HOME/keys/kiln).", valueName: "path"))
        var output: String?

        @Option(help: ArgumentHelp("A comment stored in the public key (default: user@host).", valueName: "text"))
        var comment: String?

        @Flag(help: "Replace an existing key pair (what it signed then verifies only with the old .pub).")
        var force = false

        @OptionGroup var store: StoreOptions

        func run() async throws {
            let base = output ?? store.root + "/keys/kiln"
            let key = SigningKey.generate()
            let env = ProcessInfo.processInfo.environment
            try key.write(base: base, comment: comment ?? "\(env["USER"] ?? "root")@\(ProcessRegistry.hostName)", force: force)
            print("wrote \(base).key (secret, mode 0600) and \(base).pub; key id \(key.publicKey.id)")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the trusted public keys and the signing key.")

        @OptionGroup var store: StoreOptions

        func run() async throws {
            let store = try store.open()
            if let path = store.defaultSigningKeyPath() {
                print("signing  \(try SigningKey.load(path).publicKey.id)  \(path)")
            }
            for key in try store.trustedKeys() { print("trusted  \(key.id)  \(key.comment)") }
        }
    }
}

struct Sign: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sign images' provenance (images built while no key existed).",
        discussion: """
            Builds sign what they commit when a key exists; this signs images made before. The \
            signature covers the provenance record, which names the disk's digest.

              kiln sign shop-web-v20261123-1
            """)

    @Argument(help: ArgumentHelp("Image names or families.", valueName: "name"), completion: Completions.imageNames)
    var names: [String]

    @Option(help: ArgumentHelp("The private key (default: $KILN_SIGNING_KEY, else $KILN_HOME/keys/kiln.key).", valueName: "path"))
    var key: String?

    @OptionGroup var store: StoreOptions

    func run() async throws {
        let store = try store.open()
        guard let path = key ?? store.defaultSigningKeyPath() else {
            throw KilnError(.notFound, "no signing key: make one with kiln keys generate, or pass --key")
        }
        let signingKey = try SigningKey.load(path)
        for name in names {
            let image = try store.catalog.resolve(name)
            // A signature vouches for the bytes: they are checked first, as export checks them.
            try await Verifier.trust(store, image)
            let envelope = try store.sign(image, with: signingKey, provider: nil)
            print("signed \(image.name) with key \(envelope.keyID)")
        }
    }
}
